"""Generate the Python stubs for proto/tokenweave/v1 into tokenweave/v1.

    python scripts/gen_protos.py            # write the stubs into the source tree
    python scripts/gen_protos.py --check    # exit 1 if the committed stubs are stale

The stubs (`_pb2.py`, `_pb2_grpc.py`, and mypy-protobuf `.pyi`) are build outputs: never edit
them by hand. tests/test_protos.py runs the check.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = Path("tokenweave") / "v1"
INIT_TEXT = (
    '"""Generated protobuf and gRPC stubs for tokenweave.v1 (see scripts/gen_protos.py)."""\n'
)


def generate(out_dir: Path) -> list[Path]:
    """Write the stubs under out_dir/tokenweave/v1 and return the files written."""
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE).glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    # protoc finds the mypy-protobuf plugins on PATH: use the ones beside this interpreter.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_dir / PACKAGE / "__init__.py").write_text(INIT_TEXT)
    return sorted(p for p in (out_dir / PACKAGE).iterdir() if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    target = ROOT / PACKAGE
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        if args.check:
            names = {p.name for p in generated}
            committed = (
                {p.name for p in target.glob("*") if p.is_file()} if target.exists() else set()
            )
            stale = sorted(
                names ^ committed
                | {
                    p.name
                    for p in generated
                    if p.name in committed and not filecmp.cmp(p, target / p.name, shallow=False)
                }
            )
            if stale:
                print(f"stale generated stubs in {PACKAGE}: {', '.join(stale)}; run `make protos`")
                return 1
            print(f"{PACKAGE}: {len(names)} generated files up to date")
            return 0
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for path in generated:
            shutil.copy2(path, target / path.name)
        print(f"wrote {len(generated)} files to {PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
