"""poolkit bench: the chapter's performance test (placeholder, being written)."""


def add_arguments(parser):
    parser.add_argument("--iterations", type=int, default=5000)


def run(args):
    raise SystemExit("poolkit bench is not written yet")
