// Hello, in JavaScript: the same answer as components/hello.
import { serve, text } from "hostel";

serve((request) => text(200, `Hello from Hostel! You asked for ${new URL(request.url).pathname}\n`));
