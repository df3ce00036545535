"""moto's AWS server on 127.0.0.1 and a port from the OS, for the end-to-end suite.

Prints the port on stdout, then serves until its stdin closes (the test process exited), so a
crashed test run never leaves a server behind.
"""

import logging
import os
import sys
import threading

from moto.moto_server.threaded_moto_server import ThreadedMotoServer


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(port, flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
