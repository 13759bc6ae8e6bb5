"""Start the chat in the browser: ``python app.py [--host H] [--port P] [--auth user:password]``.

Builds the index first when it is missing or stale, then serves on http://127.0.0.1:7860.
"""

import sys

from assistant.serving.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
