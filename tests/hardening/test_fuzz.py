"""Fuzzing: mutated model, data and bundle files fed to inspect, build, convert, bench, verify.

Bundles are also fuzzed structurally: entries only a streaming unzipper sees (in front, between,
hidden after the last) and local headers that disagree with the central directory, each of
which must be refused (exit 12, or 10 when corrupt), never accepted.

Each valid seed file (tiny, made by fixtures) is mutated by hypothesis (derandomized: the same
cases on every run) with truncation, byte flips, a wrong magic, a huge 32-bit size/offset/count
field and spliced chunks; crafted structural cases add what random bytes rarely reach (cyclic
ONNX graphs, mismatched external data, TFLite buffers and indices pointing outside the file,
huge declared shapes). Every case runs in the fuzz worker process (a segfault is a failure, not
a dead pytest) with a time bound, and must end with exit 0 or an EdgepackError's exit code, no
traceback, and nothing left in the output folder (see fuzzlib). The counts are printed in the
terminal summary; ``scripts/fuzz.sh`` multiplies them for long sessions.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fuzzlib import TARGETS_DIR, cases, check_case, mutations, tally
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

T = ["--targets-dir", str(TARGETS_DIR)]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory, tiny_keras: Path,
          tiny_savedmodel: Path, tiny_data: dict[str, Path]) -> dict[str, Path]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import model_files

    d = tmp_path_factory.mktemp("seeds")
    onnx_path = model_files.onnx_cnn(d / "tiny.onnx")
    xml = model_files.openvino_ir(onnx_path, d / "tiny.xml")
    return {"tflite": model_files.tflite(tiny_savedmodel, d / "tiny.tflite"), "onnx": onnx_path,
            "xml": xml, "bin": xml.with_suffix(".bin"), "keras": tiny_keras,
            "npz": tiny_data["eval"]}


def fuzz(worker, name: str, seed: Path, tmp: Path, argv: Callable[[Path, Path], list[str]],
         n: int, bound_s: float = 20, companions: dict[str, Path] | None = None,
         mutated_name: str | None = None) -> None:
    """Mutate ``seed`` ``n`` times; run ``argv(input, out_folder)`` on each mutation.

    ``companions`` are copied unchanged next to the input (an OpenVINO .bin for a mutated .xml,
    the model an .npz is fed to); ``mutated_name`` names the mutated file in that folder.
    """
    inp, out = tmp / "in", tmp / "out"
    inp.mkdir(parents=True, exist_ok=True)
    out.mkdir(exist_ok=True)
    for fname, src in (companions or {}).items():
        shutil.copyfile(src, inp / fname)
    target = inp / (mutated_name or f"model{seed.suffix}")
    keep_in = {p.name for p in inp.iterdir()} | {target.name}
    data = seed.read_bytes()

    @settings(max_examples=cases(n), derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(mutations(data))
    def case(mutation: tuple[str, bytes]) -> None:
        what, payload = mutation
        target.write_bytes(payload)
        check_case(worker, name, what, argv(target, out), tmp, out, set(), bound_s)
        extra = [p for p in inp.iterdir() if p.name not in keep_in]
        if extra:  # something written next to the input (a sidecar, a staging folder)
            tally(name).failures.append(f"{what}: left next to the input: {extra}")
            for p in extra:
                shutil.rmtree(p) if p.is_dir() else p.unlink()

    case()
    failures = tally(name).failures
    assert not failures, f"{len(failures)} failing cases of {name}:\n" + "\n".join(failures[:10])


# --------------------------------------------------------------------------------- inspect

@pytest.mark.parametrize("fmt,n", [("tflite", 150), ("onnx", 150), ("keras", 60)])
def test_fuzz_inspect(fuzz_worker, seeds, tmp_path, fmt: str, n: int) -> None:
    fuzz(fuzz_worker, f"inspect/{fmt}", seeds[fmt], tmp_path,
         lambda p, o: ["inspect", str(p), "--json"], n)


def test_fuzz_inspect_openvino(fuzz_worker, seeds, tmp_path) -> None:
    fuzz(fuzz_worker, "inspect/openvino-xml", seeds["xml"], tmp_path / "x",
         lambda p, o: ["inspect", str(p)], 40, companions={"model.bin": seeds["bin"]},
         mutated_name="model.xml")
    fuzz(fuzz_worker, "inspect/openvino-bin", seeds["bin"], tmp_path / "b",
         lambda p, o: ["inspect", str(p.with_suffix(".xml"))], 30,
         companions={"model.xml": seeds["xml"]}, mutated_name="model.bin")


# --------------------------------------------------------------------- bench (native runtimes)

@pytest.mark.parametrize("fmt,n", [("tflite", 25), ("onnx", 25)])
def test_fuzz_bench(fuzz_worker, seeds, tmp_path, fmt: str, n: int) -> None:
    fuzz(fuzz_worker, f"bench/{fmt}", seeds[fmt], tmp_path,
         lambda p, o: ["bench", str(p), "--runs", "2", "--warmup", "0"], n, bound_s=60)


def test_fuzz_bench_inputs(fuzz_worker, seeds, tmp_path) -> None:
    """Calibration/eval/bench data: a mutated .npz fed to a TFLite model's bench."""
    fuzz(fuzz_worker, "data/npz", seeds["npz"], tmp_path,
         lambda p, o: ["bench", str(p.parent / "m.tflite"), "--inputs", str(p), "--runs", "2",
                       "--warmup", "0"], 40, bound_s=60, companions={"m.tflite": seeds["tflite"]})


# ----------------------------------------------------------------------------- build, convert

@pytest.mark.parametrize("fmt,n", [("onnx", 12), ("tflite", 12)])
def test_fuzz_build(fuzz_worker, seeds, tmp_path, fmt: str, n: int) -> None:
    fuzz(fuzz_worker, f"build/{fmt}", seeds[fmt], tmp_path,
         lambda p, o: [*T, "build", str(p), "--target", f"fuzz-{fmt}", "-o", str(o / "b"),
                       "--runs", "2", "--warmup", "0"], n, bound_s=90)


def test_fuzz_convert(fuzz_worker, seeds, tmp_path) -> None:
    fuzz(fuzz_worker, "convert/onnx", seeds["onnx"], tmp_path,
         lambda p, o: ["convert", str(p), "--to", "openvino", "-o", str(o / "m.xml")], 12,
         bound_s=90)


# ------------------------------------------------------------------------------ verify

@pytest.fixture(scope="module")
def bundle(seeds, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import edgepack
    from edgepack.bundle import package

    d = tmp_path_factory.mktemp("bundle")
    edgepack.build(seeds["onnx"], "fuzz-onnx", output=d / "build", runs=2, warmup=0,
                   targets_dirs=(TARGETS_DIR,))
    return package(d / "build", "1.0.0", output=d / "dist")[0].path


def test_fuzz_verify(fuzz_worker, bundle: Path, tmp_path) -> None:
    fuzz(fuzz_worker, "verify/zip", bundle, tmp_path,
         lambda p, o: ["verify", str(p), "--extract", str(o / "x")], 60, bound_s=60)


def _layout_mutations(data: bytes) -> st.SearchStrategy[tuple[str, bytes]]:
    """(what, bytes): an entry smuggled where only a streaming reader finds it, or one field
    of a local header changed so that it disagrees with its central record."""
    import zipfile

    from hostile_files import entry_offsets, smuggled

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    offsets = entry_offsets(data)[:-1]
    smuggle = st.tuples(st.sampled_from(["in front", "between", "hidden", "gap"]),
                        st.sampled_from([*names, "evil.tflite"]),
                        st.binary(min_size=1, max_size=200)).map(
        lambda c: (f"{c[0]} {c[1]} +{len(c[2])}", smuggled(data, *c)))
    fields = {"method": 8, "crc": 14, "compressed size": 18, "size": 22, "name": 30}
    local = st.tuples(st.integers(0, len(offsets) - 1), st.sampled_from(sorted(fields)),
                      st.integers(1, 255)).map(
        lambda c: (f"local {c[1]} of entry {c[0]} ^{c[2]}",
                   _flip_at(data, offsets[c[0]] + fields[c[1]], c[2])))
    return st.one_of(smuggle, local)


def _flip_at(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes([data[at] ^ value]) + data[at + 1:]


def test_fuzz_verify_zip_layout(fuzz_worker, bundle: Path, tmp_path) -> None:
    """Every layout mutation is refused (12, or 10 for a corrupt archive), never verified."""
    out, target = tmp_path / "out", tmp_path / "bundle.zip"
    out.mkdir()
    name = "verify/zip-layout"

    @settings(max_examples=cases(40), derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(_layout_mutations(bundle.read_bytes()))
    def case(mutation: tuple[str, bytes]) -> None:
        what, payload = mutation
        target.write_bytes(payload)
        answer = check_case(fuzz_worker, name, what, ["verify", str(target), "--extract",
                                                      str(out / "x")], tmp_path, out, set(), 60)
        if answer["exit_code"] not in (10, 12, None):
            tally(name).failures.append(f"{what}: exit {answer['exit_code']}, not refused")

    case()
    failures = tally(name).failures
    assert not failures, f"{len(failures)} failing cases:\n" + "\n".join(failures[:10])


# -------------------------------------------------------------------- crafted structural cases

def _onnx_cases(seed: Path, d: Path) -> dict[str, list[Path]]:
    """name -> files (the model first) of ONNX files random bytes rarely produce."""
    import onnx
    from onnx import TensorProto, helper

    made: dict[str, list[Path]] = {}

    def save(name: str, model, *extra: Path) -> None:
        path = d / f"{name}.onnx"
        onnx.save(model, path)
        made[name] = [path, *extra]

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    cyclic = helper.make_graph([helper.make_node("Add", ["x", "b"], ["a"]),
                                helper.make_node("Relu", ["a"], ["b"]),
                                helper.make_node("Identity", ["a"], ["y"])], "cyclic", [x], [y])
    save("cyclic", helper.make_model(cyclic, opset_imports=[helper.make_opsetid("", 17)]))
    self_loop = helper.make_graph([helper.make_node("Add", ["x", "y"], ["y"])], "loop", [x], [y])
    save("self_loop", helper.make_model(self_loop, opset_imports=[helper.make_opsetid("", 17)]))
    huge = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "huge",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            [1, 2**40, 2**20])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    save("huge_shape", helper.make_model(huge, opset_imports=[helper.make_opsetid("", 17)]))
    custom = helper.make_graph([helper.make_node("Evil", ["x"], ["y"], domain="com.evil")],
                               "custom", [x], [y])
    save("custom_domain", helper.make_model(custom, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.evil", 1)]))

    base = onnx.load(seed)
    for name, entries in {
        "external_missing": {"location": "nope.bin"},
        "external_traversal": {"location": "../../../../etc/passwd"},
        "external_absolute": {"location": "/etc/passwd"},
        "external_too_long": {"location": "w.bin", "offset": "0", "length": str(2**40)},
        "external_offset_outside": {"location": "w.bin", "offset": str(2**31), "length": "4"},
    }.items():
        m = onnx.ModelProto()
        m.CopyFrom(base)
        init = m.graph.initializer[0]
        init.ClearField("raw_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        for k, v in entries.items():
            init.external_data.add(key=k, value=v)
        (d / "w.bin").write_bytes(b"\0" * 64)
        save(name, m, d / "w.bin")
    return made


def _tflite_cases(seed: Path, d: Path) -> dict[str, list[Path]]:
    """TFLite files with indices and buffers pointing outside what the file holds."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def variant(name: str, change: Callable) -> None:
        model = schema.ModelT.InitFromPackedBuf(seed.read_bytes(), 0)
        change(model)
        b = flatbuffers.Builder(1024)
        b.Finish(model.Pack(b), file_identifier=b"TFL3")
        path = d / f"{name}.tflite"
        path.write_bytes(bytes(b.Output()))
        made[name] = [path]

    made: dict[str, list[Path]] = {}
    sg = lambda m: m.subgraphs[0]  # noqa: E731
    with_data = lambda m: next(i for i, b in enumerate(m.buffers) if b.data is not None)  # noqa: E731

    def outside(m, offset: int, size: int) -> None:
        i = with_data(m)
        m.buffers[i].data, m.buffers[i].offset, m.buffers[i].size = None, offset, size

    variant("buffer_index_outside", lambda m: setattr(sg(m).tensors[-1], "buffer", 10**6))
    variant("buffer_offset_outside", lambda m: outside(m, 2**40, 64))
    variant("buffer_size_outside", lambda m: outside(m, 16, 2**40))
    variant("opcode_index_outside", lambda m: setattr(sg(m).operators[0], "opcodeIndex", 9999))
    variant("input_index_outside", lambda m: setattr(sg(m), "inputs", np.array([9999])))
    variant("op_input_outside", lambda m: setattr(sg(m).operators[0], "inputs",
                                                  np.array([9999, -5, 2**30])))
    variant("op_output_outside", lambda m: setattr(sg(m).operators[-1], "outputs",
                                                   np.array([123456])))
    variant("huge_shape", lambda m: setattr(sg(m).tensors[0], "shape",
                                            np.array([1, 2**31 - 1, 2**31 - 1, 3])))
    variant("negative_shape", lambda m: setattr(sg(m).tensors[0], "shape", np.array([-7, -1])))
    variant("no_subgraphs", lambda m: setattr(m, "subgraphs", []))
    variant("no_buffers", lambda m: setattr(m, "buffers", []))
    variant("signature_tensor_outside", lambda m: setattr(
        m.signatureDefs[0].inputs[0], "tensorIndex", 77777) if m.signatureDefs else None)
    return made


def test_fuzz_crafted(fuzz_worker, seeds, tmp_path) -> None:
    """Each crafted file through inspect, bench and build."""
    crafted = {**{f"onnx/{k}": v for k, v in _onnx_cases(seeds["onnx"], tmp_path).items()},
               **{f"tflite/{k}": v for k, v in _tflite_cases(seeds["tflite"], tmp_path).items()}}
    out = tmp_path / "out"
    out.mkdir()
    for name, (model, *_extra) in crafted.items():
        fmt = model.suffix.lstrip(".")
        for command, argv in (
                ("inspect", ["inspect", str(model)]),
                ("bench", ["bench", str(model), "--runs", "2", "--warmup", "0"]),
                ("build", [*T, "build", str(model), "--target", f"fuzz-{fmt}", "-o",
                           str(out / "b"), "--runs", "2", "--warmup", "0"])):
            check_case(fuzz_worker, "crafted/onnx+tflite", f"{name} {command}", argv, tmp_path,
                       out, set(), 60)
    failures = tally("crafted/onnx+tflite").failures
    assert not failures, "\n".join(failures)
