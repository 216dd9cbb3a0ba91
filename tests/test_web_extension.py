"""The frontend extension (nodes/web/): a validation error about a missing model file names its source.

Runs the extension's pure module in node on a response recorded from real ComfyUI 0.3.64 (Run pressed on the
shipped wan22_ti2v_then_xdub template with no model files) and on the shipped workflows' own metadata.
"""

import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(ROOT, "nodes", "web")
FIXTURE = os.path.join(ROOT, "tests", "data", "comfy_missing_models_run.json")
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node (Debian nodejs; .ci/run installs it) is not installed")

RUNNER = """
import { addModelSources, describedModels } from %s;
let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => {
  const { response, workflow, times } = JSON.parse(input);
  const changed = [];
  for (let i = 0; i < times; i++) changed.push(addModelSources(response, workflow));
  const described = Object.fromEntries(describedModels(workflow));
  process.stdout.write(JSON.stringify({ response, changed, described }));
});
"""


def run_js(response, workflow, times=1):
    code = RUNNER % json.dumps("file://" + os.path.join(WEB, "model_sources.js"))
    out = subprocess.run([NODE, "--input-type=module", "-e", code], capture_output=True, text=True, timeout=60,
                         input=json.dumps({"response": response, "workflow": workflow, "times": times}))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def fixture():
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


def test_core_loader_errors_name_their_source():
    fx = fixture()
    before = fx["response"]
    result = run_js(before, fx["workflow"])
    after = result["response"]
    core = {nid: e for nid, e in after["node_errors"].items()
            if e["class_type"] in ("UNETLoader", "CLIPLoader", "VAELoader")}
    assert sorted(e["class_type"] for e in core.values()) == ["CLIPLoader", "UNETLoader", "VAELoader"]
    for nid, err in core.items():
        (e,) = err["errors"]
        assert e["type"] == "value_not_in_list"
        name = e["extra_info"]["received_value"]
        model = result["described"][name]
        # the original words stay, the source and the folder follow
        assert e["details"].startswith(before["node_errors"][nid]["errors"][0]["details"])
        assert model["url"] in e["details"] and f"ComfyUI/models/{model['directory']}/" in e["details"]
        assert model["url"].startswith("https://huggingface.co/")
    assert result["changed"] == [3]
    # our own loaders already name their sources: left as the server wrote them
    for nid, err in after["node_errors"].items():
        if nid not in core:
            assert err == before["node_errors"][nid]


def test_idempotent_and_leaves_the_unknown_alone():
    fx = fixture()
    result = run_js(fx["response"], fx["workflow"], times=2)
    assert result["changed"] == [3, 0]
    # a value the workflow does not describe, a workflow without metadata, a response without node errors
    resp = fx["response"]
    unet = next(e for e in resp["node_errors"].values() if e["class_type"] == "UNETLoader")
    unet["errors"][0]["extra_info"]["received_value"] = "someone_elses_model.safetensors"
    assert run_js(resp, fx["workflow"])["changed"] == [2]
    assert run_js(fixture()["response"], {"nodes": [{"id": 1, "properties": {}}]})["changed"] == [0]
    assert run_js({"error": "boom"}, fx["workflow"])["changed"] == [0]
    assert run_js(None, None)["changed"] == [0]


@pytest.mark.parametrize("name", ["xdub_lipsync_video", "wan22_ti2v_then_xdub", "omnisync_after_wan21_t2v"])
def test_every_model_widget_of_the_shipped_workflows_is_described(name):
    """Each loader widget's value in the shipped workflows is a model the extension can name the source of."""
    with open(os.path.join(ROOT, "workflows", name + ".json"), encoding="utf-8") as f:
        workflow = json.load(f)
    described = run_js(None, workflow)["described"]
    for node in workflow["nodes"]:
        for m in node.get("properties", {}).get("models", []):
            assert m["name"] in node["widgets_values"], (node["type"], m["name"])
            assert described[m["name"]]["url"] == m["url"]
