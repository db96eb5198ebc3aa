from monitor.command import main

main()
