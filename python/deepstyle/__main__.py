import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the package is still being imported
    print("interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
