// The brain view (#/brain).

import { registerView } from "./views.js";

registerView("brain");
