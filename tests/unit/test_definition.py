"""Clara pipeline definitions: the four shared examples parse, bad files fail at the right spot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clara_rt.definition import (
    JOB_ID_TOKEN,
    SUPPORTED_API_VERSIONS,
    Location,
    PipelineDefinition,
    ServiceDef,
    fill_job_id,
    parse_definition,
    substitute,
)
from clara_rt.errors import DefinitionError

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "clara-pipelines"
BAD = Path(__file__).resolve().parents[1] / "data" / "definitions"

GENOMICS_VARS = {
    "DOCKER_IMAGE": "clara/genomics", "DOCKER_TAG": "0.7.2", "MAPPER_ADDITIONAL_PARAMS": "-x",
    "MAPPER_THREADS": "8", "MAPPER_KMER_SIZE": "15", "MAPPER_WINDOW_SIZE": "10",
    "MAPPER_INDEX_SIZE": "4", "RACON_ADDITIONAL_PARAMS": "-c 4", "RACON_THREADS": "8",
    "RACON_LOOPS": "2", "RACON_POLISH_BATCH_SIZE": "1000",
}
SEGMENTATIONS = ["lung-tumor-segmentation", "colon-tumor-segmentation",
                 "liver-tumor-segmentation", "spleen-segmentation"]


def example(name: str, **kwargs: object) -> PipelineDefinition:
    # A missing shared folder must fail the run, never skip it: these files are the contract.
    assert EXAMPLES.is_dir(), f"example definitions not found at {EXAMPLES}"
    kwargs.setdefault("environ", {})
    return parse_definition(EXAMPLES / name, **kwargs)  # type: ignore[arg-type]


def error_at(fixture: str, line: int, column: int, message: str) -> str:
    """Return a ``match`` pattern pinning ``<fixture>:line:column: message``."""
    return re.escape(f"{fixture}:{line}:{column}: ") + message


# --- The shared examples ------------------------------------------------------------------------


def test_examples_folder_holds_the_four_files() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == [
        "chestxray-0.4.0.yaml", "chestxray-0.5.0-typed.yaml", "genomics-denovo.yaml",
        "multiai-segmentation.yaml"]


def test_chestxray_0_4_operator_and_triton_service() -> None:
    d = example("chestxray-0.4.0.yaml")
    assert (d.api_version, d.name, d.warnings) == ("0.4.0", "chestxray-pipeline", ())
    op = d.operator("ai-app-chestxray")
    assert op.description == "Classifying Chest X-ray Images"
    assert (op.container.image, op.container.tag) == ("clara/ai-chestxray", "latest")  # type: ignore[union-attr]
    assert op.requests == {"gpu": 1}
    assert [p.path for p in op.inputs] == ["/input"]
    assert [p.path for p in op.outputs] == ["/output"]
    (trtis,) = op.services
    assert isinstance(trtis, ServiceDef)
    assert trtis.name == "trtis"
    assert trtis.http == (("NVIDIA_CLARA_TRTISURI", 8000),)
    assert trtis.container is not None
    assert trtis.container.command == (
        "trtserver", "--model-store=$(NVIDIA_CLARA_SERVICE_DATA_PATH)/models")
    assert trtis.loc.line == 16
    assert d.edges() == []


def test_chestxray_0_5_typed_ports() -> None:
    d = example("chestxray-0.5.0-typed.yaml", strict=True)
    op = d.operators[0]
    (image,) = op.inputs
    assert (image.name, image.path, image.from_) == ("gradient_date", None, None)
    assert (image.type, image.shape, image.element_type) == ("array", (3, 244, 244, 127), "float32")
    assert all(isinstance(dim, int) for dim in image.shape or ())
    (report,) = op.outputs
    assert (report.name, report.type, report.format, report.shape) == (
        "dicom_date", "stream", "dicom", None)
    assert report.loc == Location(str(EXAMPLES / "chestxray-0.5.0-typed.yaml"), 17, 5)
    assert d.warnings == ()


def test_genomics_multi_input_dag_and_variables() -> None:
    d = example("genomics-denovo.yaml", variables=GENOMICS_VARS)
    assert [op.name for op in d.operators] == ["mapper", "miniasm", "racon"]
    assert d.edges() == [("mapper", "miniasm"), ("miniasm", "racon"), ("mapper", "racon")]
    racon = d.operator("racon")
    assert [(p.from_, p.path) for p in racon.inputs] == [
        (None, "/input/"), ("miniasm", "/asmOutput"), ("mapper", "/mapperOutput")]
    assert d.source_of(racon.inputs[1]) is d.operator("miniasm").outputs[0]
    mapper = d.operator("mapper")
    assert mapper.container is not None
    assert (mapper.container.image, mapper.container.tag) == ("clara/genomics", "0.7.2")
    command = mapper.container.command or ()
    assert command[:2] == ("/bin/sh", "-c")
    # Values given for the job stay tokens in the command: data at run time (issue 16.3).
    assert command[2].startswith("mapperWrapper.sh ${{MAPPER_ADDITIONAL_PARAMS}} -i /input "
                                 "-d /mapperOutput/${{JOB_ID}} ")
    assert command[2].endswith("-t ${{MAPPER_THREADS}} -k ${{MAPPER_KMER_SIZE}} "
                               "-w ${{MAPPER_WINDOW_SIZE}} -s ${{MAPPER_INDEX_SIZE}}")
    assert dict(mapper.container.values) == {
        "MAPPER_ADDITIONAL_PARAMS": "-x", "MAPPER_THREADS": "8", "MAPPER_KMER_SIZE": "15",
        "MAPPER_WINDOW_SIZE": "10", "MAPPER_INDEX_SIZE": "4"}
    assert fill_job_id(command[2], 17).count("/mapperOutput/17") == 2
    assert d.operator("miniasm").requests == {}


def test_genomics_undefined_variable_names_it_and_its_line() -> None:
    given = dict(GENOMICS_VARS)
    del given["DOCKER_IMAGE"]
    with pytest.raises(DefinitionError, match=error_at(
            "genomics-denovo.yaml", 7, 12, r"undefined variable 'DOCKER_IMAGE'; set it with "
            r"--var DOCKER_IMAGE=VALUE, the environment, or a variables: entry$")) as info:
        example("genomics-denovo.yaml", variables=given)
    assert (info.value.line, info.value.column) == (7, 12)
    del given["MAPPER_THREADS"]
    given["DOCKER_IMAGE"] = "img"
    with pytest.raises(DefinitionError, match=error_at(
            "genomics-denovo.yaml", 9, 32, "undefined variable 'MAPPER_THREADS'")):
        example("genomics-denovo.yaml", variables=given)


def test_genomics_variables_from_environment_and_var_wins() -> None:
    d = example("genomics-denovo.yaml", environ=GENOMICS_VARS,
                variables={"DOCKER_IMAGE": "from-var"})
    container = d.operator("racon").container
    assert container is not None
    assert (container.image, container.tag) == ("from-var", "0.7.2")


def test_multiai_fan_out_fan_in_and_pull_secrets_note() -> None:
    d = example("multiai-segmentation.yaml")
    assert d.operators[0].name == "roi-split"
    assert d.edges() == [
        *(("roi-split", seg) for seg in SEGMENTATIONS),
        ("roi-split", "volume-merger"),
        *((seg, "volume-merger") for seg in SEGMENTATIONS),
        ("volume-merger", "register-volume-images-for-multi-organ"),
    ]
    assert d.pull_secrets == ("ngc-clara",)
    (note,) = d.warnings
    assert note.endswith("multiai-segmentation.yaml:3:1: pull-secrets are ignored: clara-rt "
                         "runs no containers")
    lung = d.operator("lung-tumor-segmentation")
    assert lung.variables == {"NVIDIA_CLARA_NII_EXTENSION": ".nii"}
    assert [(p.from_, p.name, p.path) for p in lung.inputs] == [("roi-split", "lung", "/input")]
    assert d.source_of(lung.inputs[0]).path == "/app/out/lung"
    assert [s.http for s in lung.services] == [(("NVIDIA_CLARA_TRTISURI", 8000),)]
    merger = d.operator("volume-merger")
    assert merger.variables == {"ROI_OPERATION": "merge"}
    assert [p.name for p in merger.outputs] == ["output", "rendering"]
    register = d.operator("register-volume-images-for-multi-organ")
    assert register.container is not None
    assert register.container.command == ("python", "register.py", "--agent", "renderserver")
    assert register.outputs == ()


def test_every_example_parses_strictly() -> None:
    for name in ("chestxray-0.4.0.yaml", "chestxray-0.5.0-typed.yaml",
                 "multiai-segmentation.yaml"):
        assert example(name, strict=True).api_version in SUPPORTED_API_VERSIONS
    assert example("genomics-denovo.yaml", variables=GENOMICS_VARS, strict=True)


def test_parse_from_text_uses_source_only_in_messages() -> None:
    text = (EXAMPLES / "chestxray-0.4.0.yaml").read_text()
    d = parse_definition("in-memory.yaml", text=text)
    assert d.path == "in-memory.yaml"
    assert d.operators[0].loc == Location("in-memory.yaml", 4, 3)
    assert str(d.operators[0].loc) == "in-memory.yaml:4:3"


# --- Golden errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "line", "column", "message"), [
    ("bad-indentation.yaml", 7, 4, r"invalid YAML: bad indentation: this line does not line up "
                                   r"with the block it belongs to \(YAML says: while parsing a "
                                   r"block mapping at line 4, column 3: expected <block end>, but "
                                   r"found '<block mapping start>'\)$"),
    ("missing-pipeline-name.yaml", 2, 1, r"missing 'name': the pipeline needs a name$"),
    ("missing-operator-name.yaml", 7, 3, r"missing 'name' in operator #2; every operator needs "
                                         r"a unique name$"),
    ("duplicate-operator.yaml", 11, 9, r"duplicate operator name 'reader' \(lines 4 and 11\); "
                                       r"operator names must be unique$"),
    ("duplicate-key.yaml", 8, 5, r"duplicate key 'image' \(lines 6 and 8\)"),
    ("unknown-from.yaml", 10, 11, r"input #2 of operator 'miniasm': 'from: mappr' names no "
                                  r"operator; operators are: mapper, miniasm$"),
    ("unknown-output.yaml", 13, 11, r"input #1 of operator 'lung-segmentation': operator "
                                    r"'roi-split' has no output named 'lungs'; its outputs are: "
                                    r"lung, liver$"),
    ("ambiguous-from.yaml", 13, 11, r"input #1 of operator 'segmentation': operator 'roi-split' "
                                    r"has no unnamed output, so this input needs a 'name' "
                                    r"choosing one of: lung, liver$"),
    ("two-unnamed-outputs.yaml", 7, 5, r"operator 'splitter' has two unnamed outputs \(lines 6 "
                                       r"and 7\); name all but one$"),
    ("duplicate-output.yaml", 8, 5, r"operator 'splitter' has two outputs named 'part' \(lines "
                                    r"6 and 8\)"),
    ("cycle.yaml", 7, 11, r"cycle among operators: a -> b -> c -> a;"),
    ("bad-element-type.yaml", 9, 19, r"unknown element-type 'floot32' in input #1 of operator "
                                     r"'classifier'; expected a NumPy numeric dtype name"),
    ("bad-port-type.yaml", 7, 11, r"unknown port type 'tensor' in output #1 of operator "
                                  r"'classifier'; expected one of array, stream$"),
    ("bad-shape.yaml", 8, 16, r"expected a list of sizes, -1 or '\*' \(any size\), or names "
                              r"such as 'H' in 'shape' of input #1 of operator 'classifier', got "
                              r"the number -2$"),
    ("undefined-variable.yaml", 7, 34, r"undefined variable 'MAPPER_THREADS'; set it with --var "
                                       r"MAPPER_THREADS=VALUE"),
    ("unclosed-variable.yaml", 6, 12, r"'\$\{\{' is never closed in '\$\{\{DOCKER_IMAGE'"),
    ("unknown-api-version.yaml", 1, 14, r"unsupported api-version '0.4'; expected one of 0.3.0, "
                                        r"0.4.0, 0.5.0 \(versions have three parts"),
    ("command-not-list.yaml", 7, 14, r"expected a list of strings for 'command' in the container "
                                     r"of operator 'register'"),
])
def test_golden_error(fixture: str, line: int, column: int, message: str) -> None:
    with pytest.raises(DefinitionError, match=error_at(fixture, line, column, message)) as info:
        parse_definition(BAD / fixture, environ={})
    assert (info.value.path, info.value.line, info.value.column) == (
        str(BAD / fixture), line, column)


def test_unknown_key_warns_and_strict_makes_it_an_error() -> None:
    d = parse_definition(BAD / "unknown-key.yaml", environ={})  # orchestrator/timeout: silent
    assert d.warnings == (
        f"{BAD / 'unknown-key.yaml'}:8:3: unknown key 'retries' in operator 'reader' (expected "
        "one of name, description, container, variables, requests, input, output, services, "
        "clara-rt)",)
    with pytest.raises(DefinitionError, match=error_at("unknown-key.yaml", 8, 3,
                                                       "unknown key 'retries' in operator")):
        parse_definition(BAD / "unknown-key.yaml", environ={}, strict=True)


def test_typed_fields_before_0_5_warn_and_strict_rejects_them() -> None:
    d = parse_definition(BAD / "typed-in-0.4.yaml", environ={})
    (warning,) = d.warnings
    assert warning.endswith(":7:5: 'element-type' in input #1 of operator 'classifier' is a "
                            "typed-port field of api-version 0.5.0, not of 0.4.0")
    assert d.operators[0].inputs[0].element_type == "float32"
    with pytest.raises(DefinitionError, match=error_at("typed-in-0.4.yaml", 7, 5,
                                                       "'element-type' in input #1")):
        parse_definition(BAD / "typed-in-0.4.yaml", environ={}, strict=True)


def test_job_id_is_left_for_the_runtime() -> None:
    d = parse_definition(BAD / "undefined-variable.yaml", environ={"MAPPER_THREADS": "4"})
    container = d.operators[0].container
    assert container is not None
    assert container.command == ("mapper.sh", "-t", "${{MAPPER_THREADS}}", "-o",
                                 "/out/${{JOB_ID}}")
    assert container.values == (("MAPPER_THREADS", "4"),)
    assert fill_job_id(container.command[-1], "job-7") == "/out/job-7"


@pytest.mark.parametrize(("text", "line", "column", "message"), [
    ("", 1, 1, r"expected a mapping at the top level \(api-version, name, operators\), got "
               r"nothing"),
    ("- a\n- b\n", 1, 1, r"expected a mapping at the top level"),
    ("name: x\noperators: [{name: a}]\n", 1, 1, r"missing 'api-version'; expected one of"),
    ("api-version: 0.4.0\nname: x\noperators: []\n", 3, 12, r"'operators' is empty"),
    ("api-version: 0.4.0\nname: x\n", 1, 1, r"missing 'operators'; expected a list"),
    ("api-version: 0.4.0\nname: x\noperators:\n- name: a\n  input: /in\n", 5, 10,
     r"expected a list for 'input' in operator 'a', got the text '/in'"),
    ("api-version: 0.4.0\nname: x\noperators:\n- name: a\n  input:\n  - /in\n", 6, 5,
     r"expected a mapping \(path, name, from...\) for input #1 of operator 'a'"),
    ("api-version: 0.4.0\nname: x\noperators:\n- name: a\n  input:\n  - from: a\n    path: /x\n"
     "  output:\n  - path: /y\n", 6, 11, r"cycle among operators: a -> a;"),
    ("api-version: 0.4.0\nname: x\noperators:\n- name: a\n  requests: {gpu: two}\n", 5, 19,
     r"expected a whole number >= 0 for 'gpu'"),
    ("api-version: 0.4.0\nname: x\noperators:\n- name: a\n\tdescription: t\n", 5, 1,
     r"invalid YAML: tab character: YAML indentation must use spaces"),
    ("api-version: 0.4.0\nname: 'x\n", 3, 1, r"invalid YAML: the text ends inside an unclosed "
                                             r"quote or bracket"),
    ("api-version: 0.4.0\n---\nname: x\n", 2, 1, r"invalid YAML: the file holds more than one "
                                                 r"YAML document"),
    ("api-version: 0.4.0\nname: x\noperators:\n- name: a\n  services:\n  - name: t\n"
     "    connections:\n      http:\n      - name: URI\n        port: http\n", 10, 15,
     r"expected a port number \(1-65535\) for 'port' in http connection #1 of service 't'"),
    ("api-version: 0.5.0\nname: x\noperators:\n- name: a\n  clara-rt: {operator: mod.Class}\n",
     5, 24, r"expected 'package.module:ClassName' for 'operator'"),
    ("api-version: 0.5.0\nname: x\noperators:\n- name: a\n  clara-rt:\n    ports: {img: image}\n"
     "  input:\n  - name: image\n", 6, 13, r"'img' in the ports of the clara-rt key of operator "
                                           r"'a' is no input or output name or path of it; "
                                           r"expected one of: image$"),
    ("api-version: 0.5.0\nname: x\noperators:\n- name: a\n  clara-rt:\n    ports: {image: }\n"
     "  input:\n  - name: image\n", 6, 19, r"expected the Python port name for 'image'"),
    ("api-version: 0.4.0\nname: ${{ 1X }}\noperators: [{name: a}]\n", 2, 7,
     r"'\$\{\{ 1X \}\}' is not a variable reference"),
    ("a: &x [*x]\n", 1, 4, r"an alias refers to the collection that contains it"),
])
def test_inline_error(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(DefinitionError, match=error_at("inline.yaml", line, column, message)):
        parse_definition("inline.yaml", text=text, environ={})


def test_missing_file_is_a_definition_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(DefinitionError, match=rf"^{re.escape(str(missing))}: cannot read"):
        parse_definition(missing)


# --- Variables, the clara-rt key, helpers -------------------------------------------------------


def test_variable_lookup_order_and_clara_rt_key() -> None:
    path = BAD / "variables-and-clara-rt.yaml"
    d = parse_definition(path, environ={}, strict=True)
    op = d.operators[0]
    assert op.variables == {"WINDOW_WIDTH": "400", "OUT_ROOT": "/operator-results"}
    assert op.outputs[0].format == "/operator-results/${{JOB_ID}}"  # operator beats top level
    assert op.inputs[0].shape == (-1, "*", "H")
    assert op.inputs[0].element_type == "float64"  # normalised by NumPy
    assert op.clara_rt is not None
    assert op.clara_rt.operator == "clara_rt.operators.preprocess.window:WindowOp"
    assert op.clara_rt.args == {"level": "40", "width": 400, "bounds": [-1000, "400"]}
    assert op.clara_rt.ports == {"volume": "volume", "/out": "windowed"}
    assert op.clara_rt.loc.line == 13
    assert parse_definition(path, environ={"OUT_ROOT": "/env"}).operators[0].outputs[0].format \
        == "/env/${{JOB_ID}}"
    over = parse_definition(path, environ={"OUT_ROOT": "/env"}, variables={"OUT_ROOT": "/var"})
    assert over.operators[0].outputs[0].format == "/var/${{JOB_ID}}"


def test_default_output_and_single_named_output_are_found_without_name() -> None:
    text = """api-version: 0.4.0
name: defaults
operators:
- name: a
  output:
  - name: extra
    path: /extra
  - path: /main
- name: b
  input:
  - from: a
    path: /in
  - from: a
    name: extra
    path: /in2
  output:
  - name: only
    path: /out
- name: c
  input:
  - from: b
    path: /in
"""
    d = parse_definition("defaults.yaml", text=text)
    b, c = d.operator("b"), d.operator("c")
    assert d.source_of(b.inputs[0]).path == "/main"
    assert d.source_of(b.inputs[1]).path == "/extra"
    assert d.source_of(c.inputs[0]).name == "only"
    assert d.edges() == [("a", "b"), ("b", "c")]  # two inputs from a: one edge


def test_anchors_and_merge_keys_are_followed() -> None:
    text = """api-version: 0.4.0
name: anchors
operators:
- name: a
  container: &box {image: clara/a, tag: 1.10}  # a number to YAML; kept as written
  services:
  - &trtis
    name: trtis
    connections: {http: [{name: NVIDIA_CLARA_TRTISURI, port: 8000}]}
- name: b
  container:
    <<: *box
    image: clara/b
  services: [*trtis]
"""
    d = parse_definition("anchors.yaml", text=text, strict=True)
    a, b = d.operators
    assert (b.container.image, b.container.tag) == ("clara/b", "1.10")  # type: ignore[union-attr]
    assert a.services[0].http == b.services[0].http == (("NVIDIA_CLARA_TRTISURI", 8000),)


def test_operator_lookup_lists_the_names() -> None:
    d = example("chestxray-0.4.0.yaml")
    with pytest.raises(DefinitionError, match=r"has no operator 'nope'; operators are: "
                                              r"ai-app-chestxray$"):
        d.operator("nope")


def test_substitute_helpers() -> None:
    loc = Location("f.yaml", 3, 9)
    assert substitute("no variables", {}) == "no variables"
    assert substitute("${{A}}-${{ B }}-${{JOB_ID}}", {"A": "1", "B": "${{A}}"}) \
        == "1-${{A}}-" + JOB_ID_TOKEN  # values are not expanded again
    assert substitute("${{ JOB_ID }}", {}) == JOB_ID_TOKEN
    assert substitute("x${{A}}", lambda name: name.lower()) == "xa"
    with pytest.raises(DefinitionError, match=r"^f\.yaml:3:9: undefined variable 'C'"):
        substitute("${{C}}", {}, loc)
    with pytest.raises(DefinitionError, match=r"^undefined variable 'C'"):
        substitute("${{C}}", lambda name: None)
    with pytest.raises(DefinitionError, match=r"never closed"):
        substitute("a ${{B} c", {"B": "b"}, loc)


def test_definition_error_prefix_keeps_old_signature() -> None:
    assert str(DefinitionError("m")) == "m"
    assert str(DefinitionError("m", path="p.yaml")) == "p.yaml: m"
    assert str(DefinitionError("m", path="p.yaml", line=3)) == "p.yaml:3: m"
    error = DefinitionError("m", path="p.yaml", line=3, column=7)
    assert (str(error), error.column) == ("p.yaml:3:7: m", 7)


# --- Clara 0.6 models: ----------------------------------------------------------------------------

MODELS = """\
api-version: 0.5.0
name: liver
operators:
- name: seg
  container: {image: clara/ai-liver, tag: "0.6"}
  models:
  - name: segmentation_liver_v1
  - name: segmentation_liver_v1
  - name: ${{SECOND}}
  input:
  - path: /input
  output:
  - path: /output
- name: report
  container: {image: clara/report}
  input:
  - from: seg
"""


def test_models_are_read_in_order_without_repeats_and_positioned() -> None:
    d = parse_definition("inline.yaml", text=MODELS, variables={"SECOND": "tumor_v2"},
                         environ={}, strict=True)
    seg, report = d.operators
    assert seg.models == ("segmentation_liver_v1", "tumor_v2")
    assert seg.models_loc is not None and (seg.models_loc.line, seg.models_loc.column) == (6, 3)
    assert report.models == () and report.models_loc is None
    assert d.warnings == ()


@pytest.mark.parametrize(("models", "line", "column", "message"), [
    ("models: segmentation_liver_v1", 6, 11, r"expected a list for 'models' in operator 'seg'"),
    ("models: [segmentation_liver_v1]", 6, 12,
     r"expected a mapping \(name\) for model #1 of operator 'seg', e.g. "
     r"\{name: segmentation_liver_v1\}, got the text 'segmentation_liver_v1'"),
    ("models: [{version: 1}]", 6, 12,
     r"missing 'name' \(the Triton model's name\) in model #1 of operator 'seg'"),
])
def test_bad_models_fail_at_the_entry(models: str, line: int, column: int, message: str) -> None:
    text = MODELS.replace("  models:\n  - name: segmentation_liver_v1\n  - name: "
                          "segmentation_liver_v1\n  - name: ${{SECOND}}\n", f"  {models}\n")
    with pytest.raises(DefinitionError, match=error_at("inline.yaml", line, column, message)):
        parse_definition("inline.yaml", text=text, environ={})


def test_unknown_key_of_a_model_warns_and_strict_rejects_it() -> None:
    text = MODELS.replace("  - name: ${{SECOND}}\n", "  - {name: b, platform: onnx}\n")
    d = parse_definition("inline.yaml", text=text, environ={})
    assert d.warnings == ("inline.yaml:9:15: unknown key 'platform' in model #3 of operator "
                          "'seg' (expected one of name)",)
    assert d.operators[0].models == ("segmentation_liver_v1", "b")
    with pytest.raises(DefinitionError, match=error_at("inline.yaml", 9, 15, "unknown key")):
        parse_definition("inline.yaml", text=text, environ={}, strict=True)


def test_control_characters_are_a_located_definition_error() -> None:
    text = "api-version: 0.4.0\nname: ok\noperators:\n- name: a\x0fb\n"
    with pytest.raises(DefinitionError) as err:
        parse_definition("ctl.yaml", text=text)
    assert str(err.value) == ("ctl.yaml:4:10: invalid YAML: character U+000F is not allowed "
                              "(YAML text may hold tabs, newlines and printable characters only)")


# --- Typed ports and unset variables (issue 17.4, 17.5) -----------------------------------------

TYPED = """\
api-version: 0.5.0
name: typed
operators:
- name: loader
  output:
  - name: image
{OUT}
- name: classifier
  input:
  - from: loader
    name: image
{IN}
"""


def test_issue_17_4_element_type_mismatch_without_resolving_operators() -> None:
    with pytest.raises(DefinitionError, match=error_at(
            "typed-element-type-mismatch.yaml", 21, 19,
            r"input #1 of operator 'classifier' does not fit output #1 of operator 'loader' "
            r"\(line 9\): dtype float32 cannot feed dtype uint8$")):
        parse_definition(BAD / "typed-element-type-mismatch.yaml", environ={})


@pytest.mark.parametrize(("out", "inp", "column", "message"), [
    ("type: array|shape: [3, -1]", "type: array|shape: [-1, -1, -1]", 12,
     r"shape \(3, \*\) \(2-d\) cannot feed shape \(\*, \*, \*\) \(3-d\)"),
    ("type: array|shape: [3, 512]", "type: array|shape: [3, 256]", 12,
     r"shape \(3, 512\) cannot feed shape \(3, 256\) \(axis 1: 512 vs 256\)"),
    ("type: stream", "type: array", 11, r"kind stream cannot feed kind array"),
    ("type: array|format: nifti", "type: array|format: dicom", 13,
     r"format nifti cannot feed format dicom"),
    ("element-type: int16", "type: array|element-type: float32", 19,
     r"dtype int16 cannot feed dtype float32"),
])
def test_issue_17_4_typed_ports_disagree(out: str, inp: str, column: int, message: str) -> None:
    text = TYPED.replace("{OUT}", _lines(out)).replace("{IN}", _lines(inp))
    line = text.splitlines().index(_lines(inp).splitlines()[-1]) + 1  # the consumer's last key
    where = (r"input #1 of operator 'classifier' does not fit output #1 of operator 'loader' "
             r"\(line 6\): ")
    with pytest.raises(DefinitionError,
                       match=error_at("inline.yaml", line, column, where + message + "$")):
        parse_definition("inline.yaml", text=text, environ={})


@pytest.mark.parametrize(("out", "inp"), [
    ("type: array|shape: [-1, 512]|element-type: float32",
     "type: array|shape: [H, 512]|element-type: float32"),
    ("type: array|element-type: float32", "type: array|shape: [1, 2]"),  # nothing shared
    ("type: array|shape: [3, 4]", "name: image"),  # the consumer declares nothing
])
def test_issue_17_4_typed_ports_that_fit(out: str, inp: str) -> None:
    text = TYPED.replace("{OUT}", _lines(out)).replace("{IN}", _lines(inp))
    d = parse_definition("inline.yaml", text=text, environ={}, strict=True)
    assert d.edges() == [("loader", "classifier")]


def _lines(fields: str) -> str:
    return "\n".join(f"    {field}" for field in fields.split("|") if field != "name: image")


def test_issue_17_5_unset_variable_warning_names_line_and_column() -> None:
    d = parse_definition(BAD / "undefined-variable.yaml", environ={}, allow_undefined=True)
    assert d.warnings == (f"{BAD / 'undefined-variable.yaml'}:7:34: variable 'MAPPER_THREADS' "
                          "is not set; 'run' needs --var MAPPER_THREADS=VALUE",)
