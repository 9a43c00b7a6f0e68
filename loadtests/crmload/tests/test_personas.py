"""What a persona reports when an answer fails: enough to tell one refusal from another."""
import json

from crmload.personas import failure_text


class Answer:
    def __init__(self, status_code, text):
        self.status_code, self.text = status_code, text

    def json(self):
        return json.loads(self.text)


def test_a_problem_is_reported_with_its_fields_however_long_its_body():
    problem = {"type": "https://crm.example.org/problems/validation_failed", "title": "The input is not valid",
               "status": 422, "code": "validation_failed", "detail": "Unknown or deleted customer.",
               "request_id": "7" * 32, "errors": {"customer_id": ["Unknown or deleted customer."]}}
    text = failure_text(Answer(422, json.dumps(problem)))
    assert text == "422: validation_failed: Unknown or deleted customer. (fields: customer_id)"


def test_an_answer_that_is_no_problem_is_reported_by_its_start():
    assert failure_text(Answer(502, "<html>" + "x" * 500)) == "502: <html>" + "x" * 194
    assert failure_text(Answer(503, "")) == "503: "
