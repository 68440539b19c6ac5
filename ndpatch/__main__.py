from ndpatch.cli import main; main()
