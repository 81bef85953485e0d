"""The pipeline builder: parsed Clara YAML in, runnable pipelines out, errors at the right spot.

Every test parses real YAML (inline or under ``tests/data/builder``) and, where it says it runs,
runs the built pipeline with real operators (``tests/data/builder/ops.py``) and real subprocesses.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from clara_rt import Runtime
from clara_rt.definition import Location, PipelineDefinition, PortDef, parse_definition
from clara_rt.definition.build import (
    ENTRY_POINT_GROUP,
    BuiltPipeline,
    build_pipeline,
    port_name,
    unresolved,
)
from clara_rt.definition.command import CommandOperator
from clara_rt.definition.folders import LoadFolderOp, SaveFolderOp, folder_formats
from clara_rt.errors import DefinitionError

DATA = Path(__file__).resolve().parents[1] / "data" / "builder"
EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "clara-pipelines"
OPS = "tests.data.builder.ops"

GENOMICS_VARS = {
    "DOCKER_IMAGE": "clara/genomics", "DOCKER_TAG": "0.7.2", "MAPPER_ADDITIONAL_PARAMS": "-x",
    "MAPPER_THREADS": "8", "MAPPER_KMER_SIZE": "15", "MAPPER_WINDOW_SIZE": "10",
    "MAPPER_INDEX_SIZE": "4", "RACON_ADDITIONAL_PARAMS": "-c 4", "RACON_THREADS": "8",
    "RACON_LOOPS": "2", "RACON_POLISH_BATCH_SIZE": "1000",
}


def parse(text: str, **kwargs: object) -> PipelineDefinition:
    kwargs.setdefault("environ", {})
    return parse_definition("inline.yaml", text=text, **kwargs)  # type: ignore[arg-type]


def build(text: str, **kwargs: object) -> BuiltPipeline:
    return build_pipeline(parse(text), **kwargs)  # type: ignore[arg-type]


def load(name: str, **variables: str) -> BuiltPipeline:
    return build_pipeline(parse_definition(DATA / name, variables=variables, environ={}))


def error_at(where: str, line: int, column: int, message: str) -> str:
    """Return a ``match`` pattern pinning ``<where>:line:column: message`` from the start."""
    return "^" + re.escape(f"{where}:{line}:{column}: ") + message


def install_images(monkeypatch: pytest.MonkeyPatch, site: Path, images: dict[str, str]) -> None:
    """Write an installed distribution whose ``clara_rt.images`` entry points are ``images``."""
    info = site / "fakeops-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeops\nVersion: 0.1\n")
    lines = "".join(f"{image} = {target}\n" for image, target in images.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    monkeypatch.syspath_prepend(str(site))


# --- 1. The clara-rt key: args, port matching, errors --------------------------------------------

MATCHING = f"""api-version: 0.5.0
name: matching
operators:
- name: threshold
  clara-rt:
    operator: {OPS}:Threshold
    args: {{level: 2.5, label: lungs}}
  input:
  - name: image               # equal name
  output:
  - name: mask
- name: masked
  clara-rt:
    operator: {OPS}:Masked
    ports: {{/app/in/ct: image, /app/out/product: out}}
  input:
  - path: /app/in/ct          # the ports mapping, by path
  - from: threshold           # the entry's name (that of the source output)
    name: mask
    path: /app/in/labels
  output:
  - path: /app/out/product    # the ports mapping, by path
- name: by-path
  clara-rt: {{operator: "{OPS}:Threshold"}}
  input:
  - path: /scans/image        # the last part of the path
  output:
  - path: /results/mask
- name: single
  clara-rt: {{operator: "{OPS}:Single"}}
  input:
  - path: /data               # one port each side
  output:
  - path: /result
"""


def test_clara_rt_key_sets_args_and_matches_every_kind_of_port() -> None:
    built = build(MATCHING)
    assert built.resolved_by == dict.fromkeys(["threshold", "masked", "by-path", "single"],
                                              "clara-rt key")
    threshold = built.pipeline.operator("threshold")
    assert (type(threshold).__name__, threshold.level, threshold.label) == (  # type: ignore[attr-defined]
        "Threshold", 2.5, "lungs")
    assert built.pipeline.operator("by-path").level == 0.5  # type: ignore[attr-defined]
    assert [str(c) for c in built.pipeline.connections] == ["threshold.mask -> masked.mask"]
    assert {key: entry.name or entry.path for key, entry in built.payload.items()  # type: ignore[union-attr]
            } == {"threshold.image": "image", "masked.image": "/app/in/ct",
                  "by-path.image": "/scans/image", "single.x": "/data"}
    assert {key: entry.path for key, entry in built.results.items()} == {  # type: ignore[union-attr]
        "masked.out": "/app/out/product", "by-path.mask": "/results/mask", "single.y": "/result"}
    payload = {"threshold.image": np.array([1, 2, 3, 4], np.float32),
               "masked.image": np.array([10, 20, 30, 40], np.float32),
               "by-path.image": np.array([0.25, 0.75], np.float32), "single.x": "hello"}
    with Runtime(workers=2) as rt:
        result = rt.submit(built.pipeline, payload).result()
    np.testing.assert_array_equal(result["masked.out"], [0, 0, 30, 40])
    np.testing.assert_array_equal(result["by-path.mask"], [0, 1])
    assert result["single.y"] == "hello"


ONE_INPUT = """api-version: 0.5.0
name: errors
operators:
- name: seg
  clara-rt: {KEY}
  input:
  - name: volume
"""


@pytest.mark.parametrize(("key", "line", "column", "message"), [
    (f'{{operator: "{OPS}:Masked"}}', 7, 5,
     r"operator 'seg': no input matches 'volume'; its inputs are: image, mask \(map it with "
     r"clara-rt: \{ports: \{volume: <port>\}\}\)$"),
    (f'{{operator: "{OPS}:Masked", ports: {{volume: vol}}}}', 7, 5,
     r"operator 'seg': ports maps 'volume' to input 'vol', but its inputs are: image, mask$"),
    (f'{{operator: "{OPS}:Nope"}}', 5, 13,
     rf"operator 'seg': cannot import '{OPS}:Nope': module '{OPS}' has no attribute 'Nope'$"),
    ('{operator: "tests.data.builder.missing:Op"}', 5, 13,
     r"operator 'seg': cannot import 'tests.data.builder.missing:Op': No module named "
     r"'tests.data.builder.missing'; clara-rt run and validate look for "
     r"'tests.data.builder.missing' in installed packages, then in the definition's folder "
     r"\(.*\); clara-rt serve only in installed packages and the server's PYTHONPATH "
     r"\(pip install the package holding it, or start serve with PYTHONPATH=DIR\)$"),
    ('{operator: "tests.data.builder.broken:Op"}', 5, 13,
     r"operator 'seg': cannot import 'tests.data.builder.broken:Op': this operator needs the "
     r"'scanner_sdk' package$"),
    (f'{{operator: "{OPS}:NotAnOperator"}}', 5, 13,
     rf"operator 'seg': '{OPS}:NotAnOperator' is not an Operator subclass$"),
    (f'{{operator: "{OPS}:Exploding", args: {{threshold: -1}}}}', 5, 13,
     rf"operator 'seg': {OPS}:Exploding\('seg', \*\*args\) failed: ValueError: threshold must "
     r"be positive, got -1$"),
    (f'{{operator: "{OPS}:Threshold", args: {{spec: 1}}}}', 5, 13,
     rf"operator 'seg': {OPS}:Threshold\('seg', \*\*args\) failed: PipelineError: operator "
     r"'seg': parameter name 'spec' is reserved$"),
])
def test_clara_rt_key_errors_point_at_the_entry_or_key(key: str, line: int, column: int,
                                                       message: str) -> None:
    definition = parse(ONE_INPUT.replace("{KEY}", key))
    with pytest.raises(DefinitionError, match=error_at("inline.yaml", line, column,
                                                       message)) as info:
        build_pipeline(definition)
    assert (info.value.path, info.value.line, info.value.column) == ("inline.yaml", line, column)


def test_block_clara_rt_key_errors_point_at_its_first_line() -> None:
    text = ONE_INPUT.replace("{KEY}", f"\n    operator: {OPS}:Nope\n    args: {{}}")
    with pytest.raises(DefinitionError, match=error_at("inline.yaml", 6, 5, "operator 'seg': "
                                                       "cannot import")):
        build(text)


def test_a_string_that_is_no_module_and_class_fails_when_parsed() -> None:
    text = ONE_INPUT.replace("{KEY}", f'{{operator: "{OPS}.Threshold"}}')
    with pytest.raises(DefinitionError, match=error_at(
            "inline.yaml", 5, 24, "expected 'package.module:ClassName' for 'operator' in the "
                                  f"clara-rt key of operator 'seg', got '{OPS}.Threshold'$")):
        parse(text)


def test_clara_rt_key_reaches_a_class_nested_in_another() -> None:
    # The parser accepts `module:Outer.Inner` (as entry points do); the builder must load it.
    text = ONE_INPUT.replace("{KEY}", f'{{operator: "{OPS}:Outer.Inner"}}')
    built = build(text)
    assert type(built.pipeline.operator("seg")).__qualname__ == "Outer.Inner"
    assert list(built.payload) == ["seg.x"]


# --- 2. Image entry points (clara_rt.images) ---------------------------------------------------

IMAGES = """api-version: 0.4.0
name: images
operators:
- name: tagged
  container: {image: clara/ai-test, tag: "1.0"}
  input:
  - path: /input
- name: other-tag
  container: {image: clara/ai-test, tag: "2.0"}
  input:
  - path: /input
- name: untagged
  container:
    image: clara/ai-test
    command: ["/bin/false"]     # an entry point beats the command
  input:
  - path: /input
"""


def test_image_entry_points_resolve_operators_and_image_tag_wins(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    install_images(monkeypatch, tmp_path / "site", {
        "clara/ai-test:1.0": f"{OPS}:ChestXrayLatest", "clara/ai-test": f"{OPS}:ChestXray"})
    built = build(IMAGES)
    assert built.resolved_by == dict.fromkeys(["tagged", "other-tag", "untagged"],
                                              "image entry point")
    assert [type(op).__name__ for op in built.pipeline.operators] == [
        "ChestXrayLatest", "ChestXray", "ChestXray"]
    assert list(built.payload) == ["tagged.input", "other-tag.input", "untagged.input"]
    with Runtime(workers=0) as rt:
        result = rt.submit(built.pipeline, built.payload_for(tmp_path)).result()
    assert result == {"tagged.output": "ChestXrayLatest", "other-tag.output": "ChestXray",
                      "untagged.output": "ChestXray"}


def test_shared_chestxray_example_runs_through_an_entry_point(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    install_images(monkeypatch, tmp_path / "site", {"clara/ai-chestxray": f"{OPS}:ChestXray"})
    definition = parse_definition(EXAMPLES / "chestxray-0.4.0.yaml", environ={})
    built = build_pipeline(definition, services={"trtis": "http://127.0.0.1:8000"})
    assert built.resolved_by == {"ai-app-chestxray": "image entry point"}
    op = built.pipeline.operator("ai-app-chestxray")
    assert op.connections == {"NVIDIA_CLARA_TRTISURI": "http://127.0.0.1:8000"}  # type: ignore[attr-defined]
    assert (list(built.payload), list(built.results)) == (["ai-app-chestxray.input"],
                                                          ["ai-app-chestxray.output"])


def test_bad_entry_point_values_fail_at_the_operator(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    install_images(monkeypatch, tmp_path / "site", {"clara/ai-test:1.0": f"{OPS}.ChestXray",
                                                    "clara/ai-test": f"{OPS}:Gone"})
    with pytest.raises(DefinitionError, match=error_at(
            "inline.yaml", 4, 3, f"operator 'tagged': '{OPS}.ChestXray' is not "
                                 r"'module\.path:ClassName'$")):
        build(IMAGES)
    with pytest.raises(DefinitionError, match=error_at(
            "inline.yaml", 4, 3, f"operator 'tagged': cannot import '{OPS}:Gone': module "
                                 f"'{OPS}' has no attribute 'Gone'$")):
        build(IMAGES.replace('tag: "1.0"', 'tag: "3.0"'))


# --- 3. Unresolved operators -------------------------------------------------------------------


def test_every_unresolved_operator_is_listed_with_how_to_map_it() -> None:
    definition = parse("""api-version: 0.4.0
name: unresolved
operators:
- name: ai-lung
  container: {image: clara/ai-lung, tag: "0.7"}
  input:
  - path: /input
- name: runs
  container: {command: ["true"]}
- name: bare
  description: no container at all
- name: untagged
  container: {image: clara/ai-liver}
""")
    assert [op.name for op in unresolved(definition)] == ["ai-lung", "bare", "untagged"]
    with pytest.raises(DefinitionError) as info:
        build_pipeline(definition)
    assert str(info.value) == (
        "inline.yaml:4:3: 3 operator(s) cannot run in clara-rt:\n"
        "  ai-lung (inline.yaml:4:3): image clara/ai-lung:0.7, no command\n"
        "  bare (inline.yaml:10:3): image (none), no command\n"
        "  untagged (inline.yaml:12:3): image clara/ai-liver, no command\n"
        "map each with a 'clara-rt: {operator: \"module:Class\"}' key, an entry point in group "
        "'clara_rt.images' named after the image, or a container.command")
    assert (info.value.line, info.value.column) == (4, 3)


def test_shared_multiai_example_is_unresolved_without_mappings() -> None:
    definition = parse_definition(EXAMPLES / "multiai-segmentation.yaml", environ={})
    names = [op.name for op in unresolved(definition)]
    assert names[:2] == ["roi-split", "lung-tumor-segmentation"]
    assert "register-volume-images-for-multi-organ" not in names  # it has a command
    with pytest.raises(DefinitionError, match=rf"{len(names)} operator\(s\) cannot run") as info:
        build_pipeline(definition)
    assert (info.value.path, info.value.line) == (definition.path, 7)


# --- 4. 0.5.0 typed ports ----------------------------------------------------------------------


def test_connected_typed_ports_must_agree_on_element_type() -> None:
    text = """api-version: 0.5.0
name: typed
operators:
- name: reader
  container: {command: ["true"]}
  output:
  - path: /out
    type: array
    element-type: float32
- name: writer
  container: {command: ["true"]}
  input:
  - from: reader
    path: /in
    type: array
    element-type: uint8
"""
    with pytest.raises(DefinitionError, match=error_at(
            "inline.yaml", 16, 19, r"input #1 of operator 'writer' does not fit output #1 of "
                                   r"operator 'reader' \(line 7\): dtype float32 cannot feed "
                                   "dtype uint8$")):
        build(text)
    assert build(text.replace("uint8", "float32")).resolved_by["writer"] == "command"


@pytest.mark.parametrize(("entry", "line", "message"), [
    ("input:\n  - name: volume\n    type: array\n    element-type: int16\n", 7,
     r"operator 'seg' input 'volume': the definition says array int16 any but the operator "
     r"declares array float32\[\*,\*,\*\] any: dtype int16 cannot feed dtype float32$"),
    ("input:\n  - name: volume\n    type: array\n    shape: [4, 4]\n", 7,
     r"operator 'seg' input 'volume': the definition says array any\[4,4\] any but the operator "
     r"declares array float32\[\*,\*,\*\] any: shape \(4, 4\) \(2-d\) cannot feed shape "
     r"\(\*, \*, \*\) \(3-d\)$"),
    ("output:\n  - name: labels\n    type: array\n    element-type: float32\n", 7,
     r"operator 'seg' output 'labels': the definition says array float32 any but the operator "
     r"declares array uint8\[\*,\*,\*\] any: dtype uint8 cannot feed dtype float32$"),
])
def test_yaml_typed_port_must_agree_with_the_python_port(entry: str, line: int,
                                                         message: str) -> None:
    text = f"""api-version: 0.5.0
name: typed
operators:
- name: seg
  clara-rt: {{operator: "{OPS}:Typed"}}
  {entry}"""
    with pytest.raises(DefinitionError, match=error_at("inline.yaml", line, 5, message)):
        build(text)


def test_yaml_typed_port_that_agrees_with_the_python_port_builds() -> None:
    built = build(f"""api-version: 0.5.0
name: typed
operators:
- name: seg
  clara-rt: {{operator: "{OPS}:Typed"}}
  input:
  - name: volume
    type: array
    shape: [-1, 8, H]
    element-type: float32
  output:
  - name: labels
    type: array
    element-type: uint8
""")
    assert built.payload["seg.volume"].shape == (-1, 8, "H")  # type: ignore[union-attr]
    assert list(built.results) == ["seg.labels"]


# --- 5. Folder/array adapters ------------------------------------------------------------------


def test_command_folder_feeds_python_array_through_a_loader(tmp_path: Path) -> None:
    built = load("folders.yaml")
    (loader,) = [op for op in built.pipeline.operators if isinstance(op, LoadFolderOp)]
    assert (loader.name, loader.format) == ("copy-output-npy", "npy")
    assert [str(c) for c in built.pipeline.connections] == [
        "copy.output -> copy-output-npy.in", "copy-output-npy.out -> total.array"]
    assert list(built.payload) == ["copy.input"]
    assert built.results == {"total.total": None, "total.seen": None}  # ports not in the YAML
    volume = np.arange(12, dtype=np.float32).reshape(3, 4)
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "volume.npy", volume)
    with Runtime(workers=2) as rt:
        result = rt.submit(built.pipeline, built.payload_for(tmp_path / "in"),
                           workspace=tmp_path / "ws").result()
    assert result["total.total"] == 66.0
    np.testing.assert_array_equal(result["total.seen"], volume)
    assert (tmp_path / "ws" / "copy" / "output" / "volume.npy").is_file()


def test_python_array_feeds_command_through_a_writer(tmp_path: Path) -> None:
    built = load("arrays.yaml", FORMAT="npy")
    (writer,) = [op for op in built.pipeline.operators if isinstance(op, SaveFolderOp)]
    assert (writer.name, writer.format) == ("make-array-npy", "npy")
    assert isinstance(built.pipeline.operator("copy"), CommandOperator)
    assert built.payload == {}
    assert list(built.results) == ["copy.out"]
    with Runtime(workers=0) as rt:
        result = rt.submit(built.pipeline, built.payload_for(tmp_path),
                           workspace=tmp_path / "ws").result()
    out = result["copy.out"]
    assert out == tmp_path / "ws" / "copy" / "out"
    assert (out / "listing.txt").read_text() == "array.npy\n"
    np.testing.assert_array_equal(np.load(out / "array.npy"),
                                  np.arange(6, dtype=np.float32).reshape(2, 3) * 2)
    assert (tmp_path / "ws" / "make-array-npy" / "array.npy").is_file()


def test_nifti_adapters_round_trip(tmp_path: Path) -> None:
    built = load("nifti.yaml")
    adapters = {op.name: (type(op).__name__, op.format) for op in built.pipeline.operators  # type: ignore[attr-defined]
                if isinstance(op, LoadFolderOp | SaveFolderOp)}
    assert adapters == {"make-array-nifti": ("SaveFolderOp", "nifti"),
                        "copy-out-nifti": ("LoadFolderOp", "nifti")}
    with Runtime(workers=2) as rt:
        result = rt.submit(built.pipeline, built.payload_for(tmp_path),
                           workspace=tmp_path / "ws").result()
    expected = np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5
    assert result["total.seen"].dtype == np.float32
    np.testing.assert_array_equal(result["total.seen"], expected)
    assert result["total.total"] == 7.5
    assert (tmp_path / "ws" / "copy" / "out" / "image.nii.gz").is_file()


def test_an_array_fans_out_to_two_commands(tmp_path: Path) -> None:
    text = (DATA / "arrays.yaml").read_text() + """- name: copy2
  container:
    command: ["/bin/sh", "-c", "cp /in/array.npy /out/"]
  input:
  - from: make
    name: array
    path: /in
  output:
  - path: /out
"""
    built = build_pipeline(parse(text, variables={"FORMAT": "npy"}))
    with Runtime(workers=0) as rt:
        result = rt.submit(built.pipeline, {}, workspace=tmp_path).result()
    assert np.load(result["copy.out"] / "array.npy").shape == (2, 3)
    assert np.load(result["copy2.out"] / "array.npy").shape == (2, 3)


def test_a_folder_fans_out_to_two_array_inputs(tmp_path: Path) -> None:
    text = (DATA / "folders.yaml").read_text() + f"""- name: total2
  clara-rt: {{operator: "{OPS}:SumArray"}}
  input:
  - from: copy
    path: /array
"""
    built = build_pipeline(parse(text))
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "volume.npy", np.ones(4, np.float32))
    with Runtime(workers=0) as rt:
        result = rt.submit(built.pipeline, built.payload_for(tmp_path / "in"),
                           workspace=tmp_path / "ws").result()
    assert (result["total.total"], result["total2.total"]) == (4.0, 4.0)


@pytest.mark.parametrize(("yaml", "line", "kinds", "adapter"), [
    ("folders.yaml", 16, "a path port feeds an array port", LoadFolderOp),
    ("arrays.yaml", 16, "a array port feeds an path port", SaveFolderOp),
])
def test_unknown_folder_format_lists_the_formats(yaml: str, line: int, kinds: str,
                                                 adapter: type) -> None:
    text = (DATA / yaml).read_text().replace("${{FORMAT}}", "tiff")
    text = text.replace('"tests.data.builder.ops:SumArray"}',
                        '"tests.data.builder.ops:SumArray", args: {fmt: tiff}}')
    which = "loader" if adapter is LoadFolderOp else "writer"
    with pytest.raises(DefinitionError, match=error_at(
            "inline.yaml", line, 5, f"{kinds}, but no folder {which} exists for format 'tiff'; "
                                    f"formats: {', '.join(folder_formats(adapter))}$")):
        build(text)
    assert "nifti" in folder_formats(adapter) and "npy" in folder_formats(adapter)


# --- 6. Services -------------------------------------------------------------------------------


def test_service_without_url_names_it_and_the_option() -> None:
    definition = parse_definition(DATA / "services.yaml", environ={})
    with pytest.raises(DefinitionError, match=error_at(
            str(DATA / "services.yaml"), 13, 5, r"service 'trtis' of operator 'classify' needs a "
                                                r"running server: pass --service "
                                                r"trtis=http://HOST:PORT$")):
        build_pipeline(definition)
    built = build_pipeline(definition, require_services=False)
    assert not hasattr(built.pipeline.operator("classify"), "connections")
    assert built.pipeline.operator("report").connections == {}  # type: ignore[attr-defined]


def test_service_url_reaches_python_and_command_operators(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.delenv("NVIDIA_CLARA_TRTISURI", raising=False)
    definition = parse_definition(DATA / "services.yaml", environ={})
    url = "http://127.0.0.1:8000"
    built = build_pipeline(definition, services={"trtis": url})
    assert built.pipeline.operator("classify").connections == {  # type: ignore[attr-defined]
        "NVIDIA_CLARA_TRTISURI": url}
    with Runtime(workers=2) as rt:
        result = rt.submit(built.pipeline, built.payload_for(tmp_path),
                           workspace=tmp_path / "ws").result()
    assert result["classify.urls"] == {"NVIDIA_CLARA_TRTISURI": url}
    env = (result["report.output"] / "env.txt").read_text().splitlines()
    assert f"NVIDIA_CLARA_TRTISURI={url}" in env


# --- 7. Payload and result keys, port names ----------------------------------------------------


def test_genomics_payload_results_and_wiring() -> None:
    definition = parse_definition(EXAMPLES / "genomics-denovo.yaml", variables=GENOMICS_VARS,
                                  environ={})
    built = build_pipeline(definition)
    assert built.resolved_by == dict.fromkeys(["mapper", "miniasm", "racon"], "command")
    assert list(built.payload) == ["mapper.input", "miniasm.input", "racon.input"]
    assert {entry.path for entry in built.payload.values()} == {"/input/"}  # type: ignore[union-attr]
    racon = definition.operator("racon")
    assert built.payload["racon.input"] is racon.inputs[0]
    assert list(built.results) == ["racon.raconOutput"]
    assert built.results["racon.raconOutput"] is racon.outputs[0]
    assert [str(c) for c in built.pipeline.connections] == [
        "mapper.mapperOutput -> miniasm.mapperOutput", "miniasm.asmOutput -> racon.asmOutput",
        "mapper.mapperOutput -> racon.mapperOutput"]
    assert built.payload_for(Path("reads")) == dict.fromkeys(built.payload, Path("reads"))


def entry(name: str | None = None, path: str | None = None,
          from_: str | None = None) -> PortDef:
    return PortDef(name=name, path=path, from_=from_, type=None, shape=None, element_type=None,
                   format=None, loc=Location("x.yaml", 1, 1))


@pytest.mark.parametrize(("port", "is_input", "expected"), [
    (entry(name="segmentationLung", path="/output"), False, "segmentationLung"),
    (entry(path="/app/out/lung"), False, "app_out_lung"),
    (entry(path="/raconOutput/"), False, "raconOutput"),
    (entry(name="ct.volume"), False, "ct_volume"),
    (entry(path="/"), False, "output"),
    (entry(), False, "output"),
    (entry(name="lung", path="/input", from_="roi-split"), True, "input"),
    (entry(name="lung", from_="roi-split"), True, "lung"),
    (entry(from_="roi-split"), True, "input"),
    (entry(name="my-image", path="/in"), True, "my_image"),
    (entry(path="/input/"), True, "input"),
    (entry(path="/2d/slices"), True, "p_2d_slices"),
    (entry(name="--", path="/data"), True, "data"),
])
def test_port_name_rules(port: PortDef, is_input: bool, expected: str) -> None:
    assert port_name(port, is_input=is_input) == expected
    assert expected.isidentifier()


# --- Command operators: constructor problems are definition errors ----------------------------


@pytest.mark.parametrize(("name", "path", "line", "column", "message"), [
    ("copy", "relative/in", 7, 5, r"operator 'copy': container path must be an absolute folder "
                                  r"below /, got 'relative/in'"),
    ("copy", "/", 7, 5, r"operator 'copy': container path must be an absolute folder below /"),
    ("copy.v2", "/in", 4, 3, r"operator name must be a non-empty string without dots or "
                             r"whitespace, got 'copy\.v2'"),
])
def test_command_operator_problems_are_definition_errors(name: str, path: str, line: int,
                                                         column: int, message: str) -> None:
    text = f"""api-version: 0.4.0
name: commands
operators:
- name: {name}
  container: {{command: ["true"]}}
  input:
  - path: {path}
"""
    with pytest.raises(DefinitionError, match=error_at("inline.yaml", line, column, message)):
        build(text)


def test_unlisted_optional_inputs_never_get_the_input_folder(tmp_path: Path) -> None:
    """Regression: an optional Python input the YAML did not mention was fed the job's input
    folder, and `clara-rt run` then moved that folder into the output (data loss)."""
    text = """\
api-version: 0.5.0
name: t
operators:
- name: keep
  clara-rt: {operator: "clara_rt.operators.postprocess.components:KeepLargestOp"}
"""
    with pytest.raises(DefinitionError, match=r"t.yaml:4:3: operator 'keep' input 'mask' is not "
                                              r"fed: add an input entry"):
        build_pipeline(parse_definition(tmp_path / "t.yaml", text=text))
    text += "  input:\n  - path: /input\n    name: mask\n"
    built = build_pipeline(parse_definition(tmp_path / "t.yaml", text=text))
    assert list(built.payload) == ["keep.mask"]  # not keep.meta, which is optional


# --- 8. Clara 0.6 models: and the triton service -------------------------------------------------

MODELS = f"""api-version: 0.5.0
name: models
operators:
- name: classify
  clara-rt: {{operator: "{OPS}:Connected"}}
  models:
  - name: segmentation_liver_v1
  input:
  - path: /input
  output:
  - name: urls
- name: report
  container:
    command: ["/bin/sh", "-c", "env > /output/env.txt"]
  models:
  - name: segmentation_liver_v1
  input:
  - path: /input
  output:
  - path: /output
"""


def test_models_without_triton_service_name_it_and_the_option() -> None:
    with pytest.raises(DefinitionError, match=error_at(
            "inline.yaml", 6, 3, r"models of operator 'classify' \(segmentation_liver_v1\) need "
                                 r"a running Triton server: pass --service "
                                 r"triton=http://HOST:PORT \(or grpc://HOST:PORT\)$")):
        build(MODELS)
    with pytest.raises(DefinitionError, match="pass --service triton="):
        build(MODELS, services={"trtis": "http://127.0.0.1:8000"})  # another service: no
    built = build(MODELS, require_services=False)  # validate
    assert not hasattr(built.pipeline.operator("classify"), "connections")


@pytest.mark.parametrize(("url", "env"), [
    ("http://127.0.0.1:8000", "NVIDIA_TRITON_HTTPURI"),
    ("https://triton.example:443", "NVIDIA_TRITON_HTTPURI"),
    ("127.0.0.1:8000", "NVIDIA_TRITON_HTTPURI"),
    ("grpc://127.0.0.1:8001", "NVIDIA_TRITON_GRPCURI"),
    ("GRPC://127.0.0.1:8001", "NVIDIA_TRITON_GRPCURI"),
])
def test_triton_service_url_reaches_operators_with_models(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path, url: str,
                                                          env: str) -> None:
    monkeypatch.delenv("NVIDIA_TRITON_HTTPURI", raising=False)
    monkeypatch.delenv("NVIDIA_TRITON_GRPCURI", raising=False)
    built = build(MODELS, services={"triton": url})
    assert built.pipeline.operator("classify").connections == {env: url}  # type: ignore[attr-defined]
    with Runtime(workers=2) as rt:
        result = rt.submit(built.pipeline, built.payload_for(tmp_path),
                           workspace=tmp_path / "ws").result()
    assert result["classify.urls"] == {env: url}
    lines = (result["report.output"] / "env.txt").read_text().splitlines()
    assert f"{env}={url}" in lines
    assert not any(line.startswith("NVIDIA_TRITON_") and not line.startswith(env)
                   for line in lines)


def test_models_and_services_give_both_connections() -> None:
    text = MODELS.replace("  models:\n  - name: segmentation_liver_v1\n  input:\n  - path: "
                          "/input\n  output:\n  - name: urls\n",
                          "  models:\n  - name: m\n  input:\n  - path: /input\n  output:\n"
                          "  - name: urls\n  services:\n  - name: trtis\n    connections:\n"
                          "      http:\n      - {name: NVIDIA_CLARA_TRTISURI, port: 8000}\n", 1)
    built = build(text, services={"triton": "grpc://h:8001", "trtis": "http://h:8000"})
    assert built.pipeline.operator("classify").connections == {  # type: ignore[attr-defined]
        "NVIDIA_CLARA_TRTISURI": "http://h:8000", "NVIDIA_TRITON_GRPCURI": "grpc://h:8001"}
