// The adapters view (#/adapters).

import { registerView } from "./views.js";

registerView("adapters");
