// The personas view (#/personas).

import { registerView } from "./views.js";

registerView("personas");
