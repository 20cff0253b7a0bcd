from sus2md.cli import main

main()
