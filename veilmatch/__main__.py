from veilmatch.cli import main

main()
