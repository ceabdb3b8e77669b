"""The `tokenweave` command line.

* `main` (_app.py) — argument parsing and dispatch; errors print as `error (STATUS): message`.
  Each command imports what it needs when it runs, so that the command starts fast.
* Daemons (_servers.py) — `coordinator` and `node`, stopping cleanly on SIGINT/SIGTERM.
* Client commands (_jobs_cmd.py) — `submit embed` with a live progress bar, `jobs`, `nodes`,
  `cancel`; `data` (_data_cmd.py); `rewards`, `epoch close`, `node claim` (_rewards_cmd.py).
* `models prepare|list` (_models_cmd.py); `demo` (_demo.py) on a `LocalCluster` (_cluster.py);
  `testnet up|down` (_testnet.py).
* Settings (_settings.py) — flags > TOKENWEAVE_* environment > TOML file > defaults.
"""

from typing import TYPE_CHECKING

from tokenweave import _lazy_exports
from tokenweave.cli._app import main

if TYPE_CHECKING:
    from tokenweave.cli._cluster import LocalCluster
else:
    __getattr__, __dir__ = _lazy_exports(__name__, {"._cluster": ("LocalCluster",)})

__all__ = ["LocalCluster", "main"]
