// The academy view (#/academy).

import { registerView } from "./views.js";

registerView("academy");
