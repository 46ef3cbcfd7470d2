import sys

try:
    from clawgate.cli.main import main

    code = main()
except KeyboardInterrupt:  # Ctrl-C before a command has its own handling: a quiet end
    code = 130
sys.exit(code)
