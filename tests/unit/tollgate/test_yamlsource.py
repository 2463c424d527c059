"""Error locations from the admin API map back to lines and columns of the YAML file."""

from __future__ import annotations

import pytest

from tollgate.yamlsource import SourceError, parse

TEXT = """\
upstreams:
  - name: a
    targets:
      - {host: 10.0.0.1, port: eighty}
apis:
  - name: x
    routes:
      - path: /
        upstream: nowhere
"""


def test_locations_map_to_the_value_or_the_key_of_a_collection() -> None:
    src = parse(TEXT, "gw.yaml")
    assert src.data["upstreams"][0]["targets"][0]["port"] == "eighty"
    assert src.where(["upstreams", 0, "targets", 0, "port"]) == "gw.yaml:4:32"
    assert src.where(["apis", 0, "routes", 0, "upstream"]) == "gw.yaml:9:19"
    assert src.where(["apis", 0, "routes"]) == "gw.yaml:7:5"
    assert src.where(["apis", 0]) == "gw.yaml:6:5"
    # A field that is missing points at the closest thing that exists (the item it belongs in).
    assert src.where(["apis", 0, "base_path"]) == "gw.yaml:6:5"
    assert src.where([]) == "gw.yaml:1:1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("upstreams: [\n", "gw.yaml:2:1: expected the node content"),
        ("upstreams: []\nupstreams: []\n", "gw.yaml:2:1: duplicate key 'upstreams'"),
        ("- a\n- b\n", "gw.yaml:1:1: the document must be a mapping"),
        ("# nothing\n", "gw.yaml: the document is empty"),
    ],
)
def test_broken_files_name_the_line(text: str, message: str) -> None:
    with pytest.raises(SourceError) as exc:
        parse(text, "gw.yaml")
    assert str(exc.value).startswith(message)
