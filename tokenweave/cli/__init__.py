"""The `tokenweave` command line.

* `main` (_app.py) — argument parsing and dispatch; errors print as `error (STATUS): message`.
* Daemons (_servers.py) — `coordinator` and `node`, stopping cleanly on SIGINT/SIGTERM.
* Client commands (_jobs_cmd.py) — `submit embed` with a live progress bar, `jobs`, `nodes`,
  `cancel`.
* `models prepare|list` (_models_cmd.py); `demo` (_demo.py) on a `LocalCluster` (_cluster.py).
* Settings (_settings.py) — flags > TOKENWEAVE_* environment > TOML file > defaults.
"""

from tokenweave.cli._app import main
from tokenweave.cli._cluster import LocalCluster

__all__ = ["LocalCluster", "main"]
