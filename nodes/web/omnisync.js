// OmniSync's frontend extension: when Run stops at validation because a model file is missing, the error names the
// file's source and folder (read from the workflow's model metadata, as the Missing Models dialog does).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { addModelSources } from "./model_sources.js";

app.registerExtension({
  name: "OmniSync.ModelSources",
  setup() {
    const queuePrompt = api.queuePrompt.bind(api);
    api.queuePrompt = async function (number, data, options) {
      try {
        const res = await queuePrompt(number, data, options);
        if (res && res.node_errors) addModelSources(res, data && data.workflow); // outputs that could not run
        return res;
      } catch (error) {
        if (error && error.response) {
          try {
            addModelSources(error.response, data && data.workflow);
          } catch (e) {
            console.warn("OmniSync: could not add model sources to the error", e);
          }
        }
        throw error;
      }
    };
  },
});
