from patchwave.cli import main

main()
