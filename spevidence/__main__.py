from spevidence.cli import main

main()
