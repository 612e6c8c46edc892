"""What the emulated xir/vart do where the real libraries fail fatally.

The real ones log through glog `LOG(FATAL)` / `CHECK` (UniLog's UNI_LOG_FATAL is LOG(FATAL):
Vitis-AI src/vai_runtime/unilog/include/UniLog/UniLog.hpp) and then abort(): SIGABRT, exit
status 134 from a shell, -6 from subprocess; no Python `except` clause runs and no traceback is
printed, only the glog "F..." line and "*** Check failure stack trace: ***". Examples: an
unreadable .xmodel ("[XIR_READ_PB_FAILURE][failed to read pb file]", Vitis-AI-Tutorials #122),
a DPU that does not finish within XLNX_DPU_TIMEOUT ms ("dpu timeout!"), a fingerprint
mismatch ("CHECK fingerprint fail", Vitis-AI #263, #975, #1072).

`fatal()` prints that line and then
  * raises EmulatedAbort, a BaseException: the app's `except Exception` / `except AppError`
    cannot turn it into a tidy error, exactly as on the board (default, for in-process tests);
  * or, with FAKE_VART_ABORT=1 in the environment, really calls os.abort() (for tests that
    run the app as a process and look at its exit status and stderr).
"""
import os
import sys
import time


class EmulatedAbort(BaseException):
    """The process would have died here (glog FATAL -> abort())."""


def fatal(where: str, message: str):
    t = time.localtime()
    line = (f"F{t.tm_mon:02d}{t.tm_mday:02d} {time.strftime('%H:%M:%S')}.000000 "
            f"{os.getpid()} {where}] {message}")
    sys.stderr.write(line + "\n*** Check failure stack trace: ***\n")
    sys.stderr.flush()
    if os.environ.get("FAKE_VART_ABORT") == "1":
        os.abort()
    raise EmulatedAbort(line)
