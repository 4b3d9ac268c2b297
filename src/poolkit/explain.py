"""poolkit explain: the chapter's figures, live (placeholder, being written)."""


def add_arguments(parser):
    pass


def run(args):
    raise SystemExit("poolkit explain is not written yet")
