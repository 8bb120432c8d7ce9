"""`python -m scripts.worker`: the same as `python -m service.worker`, by its older name."""

from __future__ import annotations

if __name__ == "__main__":
    from service.worker import main

    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
