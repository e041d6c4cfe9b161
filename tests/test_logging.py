"""The request id is on every log line written while a request runs, model threads included."""
import logging

from drum_compat.shared.request_id import RequestIdLogFilter


class Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.addFilter(RequestIdLogFilter())
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_request_id_reaches_model_log_lines(stacks_for):
    stacks = stacks_for("logging")
    capture = Capture()
    logger = logging.getLogger("user.model")
    logger.addHandler(capture)
    try:
        for send, request_id in ((stacks.flask, "flask-req-1"), (stacks.fastapi, "fastapi-req-1")):
            answer = send("POST", "/predict/", b"x\n1\n2\n", {"Content-Type": "text/csv", "X-Request-ID": request_id})
            assert answer.status == 200
            record = capture.records[-1]
            assert record.getMessage() == "scoring 2 rows"
            assert record.request_id == request_id and record.context_data == {"request_id": request_id}
    finally:
        logger.removeHandler(capture)
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    RequestIdLogFilter().filter(outside)
    assert outside.request_id == "-" and outside.context_data == ""
