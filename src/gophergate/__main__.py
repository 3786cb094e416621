from gophergate.cli import main

main()
