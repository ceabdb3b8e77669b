import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool

ROOT = Path(__file__).resolve().parents[1]


def test_committed_stubs_match_the_protos() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _descriptors_of_release(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    """The protos of release 0.1 (tests/fixtures/proto_v0_1), compiled by protoc."""
    from grpc_tools import protoc

    tree = tmp_path / "proto" / "tokenweave" / "v1"
    tree.mkdir(parents=True)
    for source in (ROOT / "tests" / "fixtures" / "proto_v0_1").glob("*.proto"):
        (tree / source.name).write_text(source.read_text())
    out = tmp_path / "v0_1.pb"
    include = Path(protoc.__file__).parent / "_proto"
    sources = sorted(f"tokenweave/v1/{p.name}" for p in tree.glob("*.proto"))
    args = ["protoc", f"-I{tmp_path / 'proto'}", f"-I{include}", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, *sources]) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def test_protos_stay_backward_compatible_with_release_0_1(tmp_path: Path) -> None:
    """Like `buf breaking`: every message, field (number, name, type, label), enum value,
    service and method of 0.1 is still there, so a 0.1 client keeps working."""
    import tokenweave.v1.data_pb2
    import tokenweave.v1.embed_pb2
    import tokenweave.v1.jobs_pb2
    import tokenweave.v1.nodes_pb2
    import tokenweave.v1.rewards_pb2  # noqa: F401  (registers the current descriptors)

    pool = descriptor_pool.Default()
    problems = []
    for file in _descriptors_of_release(tmp_path).file:
        package = file.package
        for message in file.message_type:
            name = f"{package}.{message.name}"
            try:
                now = pool.FindMessageTypeByName(name)
            except KeyError:
                problems.append(f"message {name} was removed")
                continue
            fields = {f.number: f for f in now.fields}
            for field in message.field:
                current = fields.get(field.number)
                if current is None:
                    problems.append(f"{name}: field {field.number} ({field.name}) was removed")
                elif (current.name, current.type, current.is_repeated) != (
                    field.name,
                    field.type,
                    field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
                ):
                    problems.append(f"{name}: field {field.number} ({field.name}) changed")
        for enum in file.enum_type:
            name = f"{package}.{enum.name}"
            numbers = {v.number for v in pool.FindEnumTypeByName(name).values}
            for value in enum.value:
                if value.number not in numbers:
                    problems.append(f"{name}: value {value.name} was removed")
        for service in file.service:
            name = f"{package}.{service.name}"
            methods = {m.name: m for m in pool.FindServiceByName(name).methods}
            for method in service.method:
                current_method = methods.get(method.name)
                if current_method is None:
                    problems.append(f"{name}.{method.name} was removed")
                    continue
                signature = (
                    f".{current_method.input_type.full_name}",
                    f".{current_method.output_type.full_name}",
                )
                if signature != (method.input_type, method.output_type):
                    problems.append(f"{name}.{method.name} changed its message types")
    assert problems == []
