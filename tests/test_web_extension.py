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
import { addModelSources, describedModels, mergeRepeatedReasons } from %s;
let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => {
  const { response, workflow, times } = JSON.parse(input);
  const changed = [], merged = [];
  for (let i = 0; i < times; i++) {
    merged.push(mergeRepeatedReasons(response));
    changed.push(addModelSources(response, workflow));
  }
  const described = Object.fromEntries(describedModels(workflow));
  process.stdout.write(JSON.stringify({ response, changed, merged, described }));
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
    # our own loaders already name their sources: their words are kept, each reason said once
    for nid, err in after["node_errors"].items():
        if nid in core:
            continue
        reasons = list(dict.fromkeys(e["details"].split(" - ", 1)[1] for e in before["node_errors"][nid]["errors"]))
        assert [e["details"].split(" - ", 1)[1] for e in err["errors"]] == reasons


def test_a_reason_repeated_for_each_input_is_said_once():
    fx = fixture()
    before = fx["response"]["node_errors"]
    audio = next(nid for nid, e in before.items() if e["class_type"] == "OmniSyncXDubAudioLoader")
    # as recorded: ComfyUI 0.3.64 writes the loader's one reason twice, once per input of validate_inputs
    assert [e["extra_info"]["input_name"] for e in before[audio]["errors"]] == ["whisper", "wav2vec2"]
    result = run_js(fx["response"], fx["workflow"])
    (error,) = result["response"]["node_errors"][audio]["errors"]
    assert error["details"] == "whisper, wav2vec2 - " + before[audio]["errors"][0]["details"].split(" - ", 1)[1]
    assert result["merged"] == [1]
    # different reasons stay apart; other error types are not touched
    two = {"node_errors": {"1": {"class_type": "X", "errors": [
        {"type": "custom_validation_failed", "details": "a - one", "extra_info": {"input_name": "a"}},
        {"type": "custom_validation_failed", "details": "b - two", "extra_info": {"input_name": "b"}},
        {"type": "value_not_in_list", "details": "c - one", "extra_info": {"input_name": "c"}}]}}}
    out = run_js(two, None)
    assert out["merged"] == [0] and out["response"] == two


def test_idempotent_and_leaves_the_unknown_alone():
    fx = fixture()
    result = run_js(fx["response"], fx["workflow"], times=2)
    assert result["changed"] == [3, 0] and result["merged"] == [1, 0]
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
