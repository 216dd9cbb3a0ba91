// OmniSync: name each missing model file's source in ComfyUI's "Value not in list" errors, and say a node's
// custom validation reason once (ComfyUI repeats it for every input its validate function reads).
//
// A model widget of a shared workflow carries the frontend's model metadata (`properties.models`: name, url,
// directory), which the Missing Models dialog reads when the workflow opens. When the user presses Run anyway, the
// server's validation (core loaders too: Load Diffusion Model, Load CLIP, Load VAE) only says
// "Value not in list: unet_name: 'X' not in [...]". This module adds, to each such error whose missing value the
// workflow describes, where the file comes from and where it goes. Pure functions, no imports: tests run it in node.

const NOTE_MARK = " → download ";

// Every model the workflow describes: node properties.models (also inside subgraphs) and the top-level models list.
export function describedModels(workflow) {
  const found = new Map();
  const add = (m) => {
    if (m && typeof m.name === "string" && typeof m.url === "string" && !found.has(m.name)) {
      found.set(m.name, { name: m.name, url: m.url, directory: m.directory || "" });
    }
  };
  if (!workflow || typeof workflow !== "object") return found;
  const nodeLists = [workflow.nodes || []];
  for (const sg of (workflow.definitions && workflow.definitions.subgraphs) || []) nodeLists.push(sg.nodes || []);
  for (const nodes of nodeLists) {
    for (const node of nodes) {
      for (const m of (node && node.properties && node.properties.models) || []) add(m);
    }
  }
  for (const m of workflow.models || []) add(m);
  return found;
}

// The words appended to one error's details.
export function sourceNote(model) {
  const where = model.directory ? `ComfyUI/models/${model.directory}/` : "its ComfyUI models folder";
  return `${NOTE_MARK}${model.name} from ${model.url} and save it in ${where} as ${model.name}, then press R ` +
    "to refresh the lists";
}

// Adds the source of every described, missing model to the server's validation response (in place).
// Returns how many errors were changed. Safe on any response: unknown shapes are left as they are.
export function addModelSources(response, workflow) {
  if (!response || typeof response !== "object" || !response.node_errors) return 0;
  const models = describedModels(workflow);
  if (!models.size) return 0;
  let changed = 0;
  for (const nodeError of Object.values(response.node_errors)) {
    for (const error of (nodeError && nodeError.errors) || []) {
      if (!error || error.type !== "value_not_in_list") continue;
      const value = error.extra_info && error.extra_info.received_value;
      const model = typeof value === "string" ? models.get(value) : undefined;
      if (!model) continue;
      const details = typeof error.details === "string" ? error.details : "";
      if (details.includes(NOTE_MARK)) continue;
      error.details = details + sourceNote(model);
      changed += 1;
    }
  }
  return changed;
}

// ComfyUI's validation repeats one custom reason once per input of the node's validate function ("whisper - R",
// "wav2vec2 - R"). Say it once, naming the inputs ("whisper, wav2vec2 - R"). Returns how many repeats were merged.
export function mergeRepeatedReasons(response) {
  if (!response || typeof response !== "object" || !response.node_errors) return 0;
  let merged = 0;
  for (const nodeError of Object.values(response.node_errors)) {
    if (!nodeError || !Array.isArray(nodeError.errors)) continue;
    const kept = [];
    const byReason = new Map();
    for (const error of nodeError.errors) {
      const details = error && typeof error.details === "string" ? error.details : null;
      const input = error && error.extra_info && error.extra_info.input_name;
      const cut = details === null ? -1 : details.indexOf(" - ");
      if (!error || error.type !== "custom_validation_failed" || typeof input !== "string" || cut < 0 ||
          details.slice(0, cut) !== input) {
        kept.push(error);
        continue;
      }
      const reason = details.slice(cut + 3);
      const first = byReason.get(reason);
      if (first) {
        first.inputs.push(input);
        first.error.details = `${first.inputs.join(", ")} - ${reason}`;
        merged += 1;
      } else {
        byReason.set(reason, { error, inputs: [input] });
        kept.push(error);
      }
    }
    nodeError.errors = kept;
  }
  return merged;
}
