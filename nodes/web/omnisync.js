// OmniSync's frontend extension: when Run stops at validation because a model file is missing, the error names the
// file's source and folder (read from the workflow's model metadata, as the Missing Models dialog does), and a
// node's custom validation reason is said once, not once per input.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { addModelSources, mergeRepeatedReasons } from "./model_sources.js";

function explain(response, workflow) {
  try {
    mergeRepeatedReasons(response);
    addModelSources(response, workflow);
  } catch (e) {
    console.warn("OmniSync: could not add model sources to the validation errors", e);
  }
}

app.registerExtension({
  name: "OmniSync.ModelSources",
  setup() {
    const queuePrompt = api.queuePrompt.bind(api);
    api.queuePrompt = async function (number, data, options) {
      try {
        const res = await queuePrompt(number, data, options);
        if (res && res.node_errors) explain(res, data && data.workflow); // outputs that could not run
        return res;
      } catch (error) {
        if (error && error.response) {
          explain(error.response, data && data.workflow);
        }
        throw error;
      }
    };
  },
});
