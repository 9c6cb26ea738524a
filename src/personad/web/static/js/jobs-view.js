// The jobs view (#/jobs).

import { registerView } from "./views.js";

registerView("jobs");
