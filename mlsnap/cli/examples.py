"""The order ``mlsnap --help`` lists commands in (the workflow's), and each command's examples.

A test parses every example with the real command line, so none can name an option that does
not exist.
"""

from __future__ import annotations

# Set up, record, share, restore, inspect history, then the helpers.
ORDER = ("init", "commit", "run", "repro", "push", "pull", "status", "log", "show", "diff", "tag",
         "get", "report", "verify", "gc", "env", "remote", "hooks", "hook", "demo")

EXAMPLES: dict[str, tuple[str, ...]] = {
    "mlsnap": (
        "mlsnap init --remote /mnt/storage/models",
        "mlsnap commit model.pkl --data data/ --params params.yaml -M baseline",
        "git checkout model@v1.0.0 && mlsnap pull",
        "mlsnap log",
    ),
    "init": (
        "mlsnap init --remote /mnt/storage/models",
        "mlsnap init --remote s3://bucket/models --local endpointurl=http://127.0.0.1:9000",
    ),
    "commit": (
        "mlsnap commit model.pkl --data data/train.csv --params params.yaml -M baseline",
        "mlsnap commit --metrics metrics.json -M 'lower lr'   # the same paths as last time",
        "mlsnap commit checkpoints/ --name ckpt -p lr=0.01 -m accuracy=0.93 --tag 1.0.0",
    ),
    "run": (
        ("mlsnap run -o model.pkl --data data/ --params params.yaml --metrics metrics.json "
        "-- python train.py"),
        "mlsnap run -M 'lower lr' -- python train.py --lr 0.01   # the same paths as last time",
    ),
    "repro": (
        "mlsnap repro                      # the snapshot at HEAD",
        "mlsnap repro model@v1.0.0 --atol 0.001 --json",
    ),
    "push": (
        "mlsnap push",
        "mlsnap push --name model --jobs 8",
    ),
    "pull": (
        "git checkout model@v1.0.0 && mlsnap pull",
        "mlsnap pull --strict-env          # exit 3 when the environment drifted",
    ),
    "status": (
        "mlsnap status",
        "mlsnap status --no-remote --json",
    ),
    "log": (
        "mlsnap log",
        "mlsnap log -n 5 --name model --json",
        "mlsnap log --all",
        "mlsnap log --plot accuracy          # a sparkline per name under the table",
    ),
    "show": (
        "mlsnap show",
        "mlsnap show model@v1.0.0 --json",
        "mlsnap show HEAD~3 --requirements > requirements.txt",
    ),
    "diff": (
        "mlsnap diff                       # HEAD's snapshot vs the previous one",
        "mlsnap diff model@v1.0.0 model@v1.1.0 --json",
    ),
    "tag": (
        "mlsnap tag model 1.0.0",
        "mlsnap tag model 1.0.1 --sign",
        "mlsnap tag model 1.1.0 HEAD~2",
    ),
    "get": (
        "mlsnap get model@v1.0.0 -o deploy/",
    ),
    "verify": (
        "mlsnap verify                     # the work tree's snapshots, against the cache",
        "mlsnap verify model@v1.0.0 --remote --require-signed",
        "mlsnap verify HEAD~3 --deep --json",
    ),
    "report": (
        "mlsnap report                     # every snapshot reachable from HEAD",
        "mlsnap report --name model -o report.html --open",
        "mlsnap report model@v1.0.0 model@v1.1.0 HEAD",
    ),
    "gc": (
        "mlsnap gc                         # no policy: the space each snapshot takes",
        "mlsnap gc --keep-last 3 --keep-best accuracy:max 1   # a dry run: what would go",
        "mlsnap gc --keep-last 3 --remote --yes",
    ),
    "env": (
        "mlsnap env",
        "mlsnap env --requirements > requirements.txt",
        "mlsnap env --json --python .venv/bin/python",
    ),
    "remote": (
        "mlsnap remote set endpointurl http://127.0.0.1:9000",
        "mlsnap remote set secret_access_key VALUE --local",
    ),
    "remote set": (
        "mlsnap remote set region eu-west-1",
        "mlsnap remote set password VALUE --local",
    ),
    "hooks": (
        "mlsnap hooks install",
        "mlsnap hooks install --uninstall",
    ),
    "hooks install": (
        "mlsnap hooks install",
        "mlsnap hooks install --uninstall",
    ),
    "hook": (
        "mlsnap hook mlsnap-no-large-files --max-kb 20480",
        "mlsnap hook mlsnap-check-manifest",
    ),
    "hook mlsnap-no-large-files": ("mlsnap hook mlsnap-no-large-files --max-kb 20480",),
    "hook mlsnap-check-manifest": ("mlsnap hook mlsnap-check-manifest",),
    "hook mlsnap-status": ("mlsnap hook mlsnap-status",),
    "hook mlsnap-push": ("mlsnap hook mlsnap-push",),
    "hook mlsnap-pull": ("mlsnap hook mlsnap-pull",),
    "demo": (
        "mlsnap demo",
        "mlsnap demo --keep",
    ),
}


def epilog(path: str) -> str | None:
    """The ``Examples:`` block of the command ``path`` ("commit", "remote set"), kept as
    written (Click's ``\\b`` marker stops it from rewrapping the lines)."""
    lines = EXAMPLES.get(path)
    if not lines:
        return None
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
