"""The DICOM adapter's configuration: defaults, types, and every mistake located and explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from clara_rt.dicom.config import AdapterConfigError, load_config, parse_config
from clara_rt.errors import DefinitionError

GOOD = """\
dicom:
  ae-title: CLARA
  host: 0.0.0.0
  port: 11112
  storage: received
  quiet-time: 2.5
  group-by: study
  max-pdu: 65536
ae-titles:
  - name: LUNGSEG
    pipelines: [ct-lung-seg, ct-liver]
    priority: high
    allowed-calling-aes: [SCANNER1, "CT 2"]
    ignored-sop-classes: ["1.2.840.10008.5.1.4.1.1.7"]
    variables: {threshold: 0.5, mode: fast}
    destinations: [PACS]
  - name: "1234"
    pipelines: [x]
destinations:
  - name: PACS
    ae-title: ORTHANC
    host: 127.0.0.1
    port: 4242
    retries: 5
    retry-delay: 0.5
"""

MINIMAL = """\
dicom: {ae-title: CLARA, port: 104}
ae-titles: [{name: AI, pipelines: [p]}]
"""


def test_every_key_is_read(tmp_path: Path) -> None:
    path = tmp_path / "adapter.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    d = config.dicom
    assert (d.ae_title, d.host, d.port, d.quiet_time, d.group_by, d.max_pdu) == (
        "CLARA", "0.0.0.0", 11112, 2.5, "study", 65536)
    assert d.storage == tmp_path / "received"  # relative to the configuration file
    lung = config.called_ae("LUNGSEG ")  # DICOM pads AE titles with spaces
    assert lung is not None
    assert lung.pipelines == ("ct-lung-seg", "ct-liver")
    assert lung.priority == "high"
    assert lung.allowed_calling_aes == {"SCANNER1", "CT 2"}
    assert lung.allows("SCANNER1") and not lung.allows("OTHER")
    assert lung.ignored_sop_classes == {"1.2.840.10008.5.1.4.1.1.7"}
    assert lung.variables == {"threshold": "0.5", "mode": "fast"}
    assert lung.destinations == ("PACS",)
    assert config.called_ae("1234") is not None  # written as a number, read as the AE title
    pacs = config.destination("PACS")
    assert pacs is not None
    assert (pacs.ae_title, pacs.host, pacs.port, pacs.retries, pacs.retry_delay) == (
        "ORTHANC", "127.0.0.1", 4242, 5, 0.5)
    assert str(pacs) == "PACS (ORTHANC at 127.0.0.1:4242)"


def test_defaults() -> None:
    config = parse_config(MINIMAL, "a.yaml")
    d = config.dicom
    assert (d.host, d.quiet_time, d.group_by, d.max_pdu) == ("127.0.0.1", 5.0, "series", 0)
    assert (d.max_associations, d.acse_timeout, d.dimse_timeout, d.network_timeout) == (
        32, 10.0, 60.0, 60.0)
    assert d.storage == Path("dicom-adapter").resolve()
    ae = config.ae_titles[0]
    assert (ae.priority, ae.allowed_calling_aes, ae.destinations) == ("normal", frozenset(), ())
    assert ae.allows("ANYONE")
    assert config.destinations == ()


@pytest.mark.parametrize(("text", "message"), [
    ("dicom: {ae-title: CLARA, port: 104, prot: 1}\nae-titles: [{name: A, pipelines: [p]}]\n",
     r"^a\.yaml:1:37: unknown key 'prot' in 'dicom' \(expected one of ae-title, host, port, "
     r"storage, quiet-time, group-by, max-pdu, acse-timeout, dimse-timeout, network-timeout, "
     r"max-associations\)$"),
    ("dicom: {ae-title: CLARA, port: 104, acse-timeout: 0}\nae-titles: [{name: A, pipelines: "
     "[p]}]\n", r"^a\.yaml:1:51: 'acse-timeout' in 'dicom' must be > 0, got 0$"),
    ("dicom: {ae-title: CLARA, port: 104, max-associations: 2.5}\nae-titles: [{name: A, "
     "pipelines: [p]}]\n", r"'max-associations' in 'dicom' must be an integer, got"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: [{name: A, pipelines: [p]}]\nextra: 1\n",
     r"^a\.yaml:3:1: unknown key 'extra' in the configuration"),
    ("dicom: {ae-title: CLARA, port: 0}\nae-titles: [{name: A, pipelines: [p]}]\n",
     r"^a\.yaml:1:32: 'port' in 'dicom' must be an integer from 1 to 65535, got the number 0$"),
    ("dicom: {ae-title: CLARA, port: '104'}\nae-titles: [{name: A, pipelines: [p]}]\n",
     r"'port' in 'dicom' must be an integer from 1 to 65535, got the text '104'$"),
    ("dicom: {ae-title: CLARA}\nae-titles: [{name: A, pipelines: [p]}]\n",
     r"^a\.yaml:1:8: 'dicom' has no 'port'$"),
    ("dicom: {ae-title: A_VERY_LONG_AE_TITLE, port: 104}\nae-titles: [{name: A, pipelines: "
     "[p]}]\n", r"^a\.yaml:1:19: 'ae-title' in 'dicom': 'A_VERY_LONG_AE_TITLE' is not a valid "
                r"AE title \(1 to 16 characters, no backslash or control characters\)$"),
    ("dicom: {ae-title: 'A\\B', port: 104}\nae-titles: [{name: A, pipelines: [p]}]\n",
     r"is not a valid AE title"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: [{name: ../x, pipelines: [p]}]\n",
     r"^a\.yaml:2:20: 'name' in an 'ae-titles' entry: called AE title '../x' names a storage "
     r"folder: use letters, digits, '_', '-', '.' and spaces, not starting with '.' or a space$"),
    ("dicom: {ae-title: CLARA, port: 104}\n",
     r"^a\.yaml:1:1: 'ae-titles' must list at least one entry$"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: []\n",
     r"^a\.yaml:2:12: 'ae-titles' must list at least one entry$"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: [{name: A}]\n",
     r"^a\.yaml:2:13: AE title 'A' needs 'pipelines': a list of at least one name$"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: [{name: A, pipelines: [p], priority: "
     "urgent}]\n", r"^a\.yaml:2:49: priority of AE title 'A' must be one of immediate, high, "
                   r"normal, low, got 'urgent'$"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: [{name: A, pipelines: [p], destinations: "
     "[PACS]}]\ndestinations: [{name: ARCHIVE, ae-title: X, host: h, port: 1}]\n",
     r"^a\.yaml:2:54: AE title 'A' names destination 'PACS', which is not in 'destinations' "
     r"\(defined: ARCHIVE\)$"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: [{name: A, pipelines: [p]}, {name: A, "
     "pipelines: [q]}]\n", r"^a\.yaml:2:40: AE title 'A' is defined twice in 'ae-titles'$"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: [{name: A, pipelines: [p], "
     "ignored-sop-classes: [1.2.x]}]\n", r"^a\.yaml:2:61: 'ignored-sop-classes' of AE title "
                                         r"'A': '1.2.x' is not a UID"),
    ("dicom: {ae-title: CLARA, port: 104, quiet-time: 0}\nae-titles: [{name: A, pipelines: "
     "[p]}]\n", r"^a\.yaml:1:49: 'quiet-time' in 'dicom' must be > 0, got 0$"),
    ("dicom: {ae-title: CLARA, port: 104, group-by: patient}\nae-titles: [{name: A, "
     "pipelines: [p]}]\n", r"'group-by' must be one of series, study, got 'patient'$"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: [{name: A, pipelines: [p]}]\n"
     "destinations: [{name: P, ae-title: X, host: h, port: 1, retries: -1}]\n",
     r"^a\.yaml:3:66: 'retries' in destination 'P' must be >= 0, got -1$"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: [{name: A, pipelines: [p]}]\n"
     "destinations: [{name: P, ae-title: X, port: 1}]\n",
     r"^a\.yaml:3:16: destination 'P' has no 'host'$"),
    ("dicom: {ae-title: CLARA, port: 104}\nae-titles: [{name: A, pipelines: [p], "
     "allowed-calling-aes: [OK, TOO_LONG_FOR_AN_AE_TITLE]}]\n",
     r"^a\.yaml:2:65: 'allowed-calling-aes': 'TOO_LONG_FOR_AN_AE_TITLE' is not a valid AE "
     r"title"),
    ("dicom: [1, 2]\nae-titles: [{name: A, pipelines: [p]}]\n",
     r"^a\.yaml:1:8: expected a mapping for 'dicom', got a list$"),
    ("- just a list\n", r"^a\.yaml:1:1: expected a mapping with 'dicom', 'ae-titles' and "
                        r"'destinations', got a list$"),
    ("dicom: {ae-title: CLARA, port: 104\n", r"^a\.yaml:2:1: invalid YAML"),
])
def test_mistakes_are_located(text: str, message: str) -> None:
    with pytest.raises(AdapterConfigError, match=message):
        parse_config(text, "a.yaml")


def test_error_is_a_definition_error_with_position() -> None:
    with pytest.raises(DefinitionError) as info:
        parse_config("dicom: {ae-title: CLARA, port: 104, prot: 1}\n", "a.yaml")
    assert (info.value.path, info.value.line, info.value.column) == ("a.yaml", 1, 37)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(AdapterConfigError, match=r"nope\.yaml: cannot read the DICOM adapter "
                                                 r"configuration: .*No such file"):
        load_config(tmp_path / "nope.yaml")


def test_the_example_configuration_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "dicom-adapter" / "adapter.yaml"
    config = load_config(example)
    assert [ae.name for ae in config.ae_titles] == ["LUNGSEG"]
    assert config.ae_titles[0].pipelines == ("ct-lung-seg",)
    assert config.dicom.storage == example.parent / "dicom-adapter"
    assert [d.ae_title for d in config.destinations] == ["ORTHANC"]


def test_issue_17_10_config_problems_lists_every_mistake(tmp_path: Path) -> None:
    from clara_rt.dicom.config import config_problems

    path = tmp_path / "a.yaml"
    path.write_text(
        "dicom: {ae-title: CLARA, port: 104, quiet-time: 0}\n"
        "ae-titles:\n"
        "  - {name: A, pipelines: [p], priority: urgent}\n"
        "  - {name: B, pipelines: [q], destinations: [P]}\n"
        "destinations:\n"
        "  - {name: P, ae-title: X, port: 1}\n"
        "prot: 1\n")
    problems = [str(p) for p in config_problems(path)]
    assert problems == [
        f"{path}:1:49: 'quiet-time' in 'dicom' must be > 0, got 0",
        f"{path}:3:41: priority of AE title 'A' must be one of immediate, high, normal, low, "
        "got 'urgent'",
        f"{path}:6:5: destination 'P' has no 'host'",  # B naming P is not a second mistake
        f"{path}:7:1: unknown key 'prot' in the configuration (expected one of dicom, "
        "ae-titles, destinations)",
    ]
    path.write_text(GOOD)
    assert config_problems(path) == []
    [missing] = config_problems(tmp_path / "nope.yaml")
    assert str(missing).startswith(f"{tmp_path / 'nope.yaml'}: cannot read")
