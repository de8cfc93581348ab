"""A `dsv2 serve` process on a free port, for the server tests."""
import re
import subprocess


def start(dsv2, model, *extra):
    """Starts the server (one thread) and returns (process, port) once it listens."""
    proc = subprocess.Popen([dsv2, "serve", "-m", model, "--port", "0", "-t", "1", *extra],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    match = re.search(r"http://[\d.]+:(\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError("server did not start: " + line + proc.stderr.read())
    return proc, int(match.group(1))


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    proc.stderr.close()
