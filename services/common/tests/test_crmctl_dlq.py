"""crmctl dlq: list, replay and purge dead letters, on a throwaway RabbitMQ vhost."""
import json

import pytest
from nameko.amqp.publish import Publisher
from nameko.standalone.events import get_event_exchange

from crm_common_test_helpers import wait_for
from crm_common.consumer import dead_letter_queue_name, event_handler
from crm_common.context import RequestContext
from crm_common.crmctl import main
from crm_common.crmctl import dlq
from crm_common.crmctl.common import CommandFailed
from crm_common.errors import ValidationFailed
from crm_common.events import make_envelope
from crm_common.outbox import context_headers

ACTOR = RequestContext(request_id="req-dlq", user_id="user-7", role="support", team_id="t-1")
SECRET = "Jane Secret-Person"  # personal data in the event's data: never listed unless asked


def envelope_for(item):
    return make_envelope("producer", "thing.happened", {"item": item, "name": SECRET}, ACTOR)


def publish_event(rabbit_config, envelope):
    exchange = get_event_exchange("producer", rabbit_config)
    Publisher(rabbit_config["AMQP_URI"], serializer="json").publish(
        envelope, exchange=exchange, routing_key=envelope["type"],
        extra_headers=context_headers(envelope), declare=[exchange])


def make_service(name, calls, refuse):
    """Refuses (ValidationFailed: dead-lettered at once) every event whose item is in ``refuse``."""

    class Service:
        @event_handler("producer", "thing.happened")
        def handle(self, envelope):
            calls.append(envelope["data"]["item"])
            if envelope["data"]["item"] in refuse:
                raise ValidationFailed("cannot read it", {"item": ["Unreadable."]})

    Service.name = name
    return Service


@pytest.fixture
def doomed(container_factory, rabbit_config, monkeypatch, unique_name):
    """A running service whose handler refuses the items in ``refuse``; ``dead(*items)`` publishes
    them and waits until each is in the service's dead-letter queue."""
    monkeypatch.setenv("CRM_EVENT_RETRY_DELAYS", "0.05")

    class Doomed:
        name = unique_name("dlq")
        uri = rabbit_config["AMQP_URI"]
        calls = []
        refuse = set()

        def dead(self, *items):
            envelopes = [envelope_for(item) for item in items]
            self.refuse.update(items)
            before = self.count()
            for envelope in envelopes:
                publish_event(rabbit_config, envelope)
            wait_for(lambda: self.count() == before + len(items), message="dead letters")
            return envelopes

        def count(self):
            return dlq.list_dead_letters([self.name], uri=self.uri)[self.name]["count"] or 0

        def listed(self, **kwargs):
            return dlq.list_dead_letters([self.name], uri=self.uri, **kwargs)[self.name]

    doomed = Doomed()
    # One worker: events are dead-lettered in the order they were published.
    container_factory(make_service(doomed.name, doomed.calls, doomed.refuse),
                      dict(rabbit_config, max_workers=1)).start()
    return doomed


def test_list_shows_metadata_in_order_and_leaves_the_queue_as_it_was(doomed):
    envelopes = doomed.dead("a", "b", "c")

    for _ in range(2):  # a listing does not consume: the second one sees the same, in the same order
        listed = doomed.listed()
        assert listed["count"] == 3
        assert [entry["event_id"] for entry in listed["messages"]] == [e["event_id"] for e in envelopes]
    first = listed["messages"][0]
    assert first["type"] == "thing.happened"
    assert first["producer"] == "producer"
    assert first["occurred_at"] == envelopes[0]["occurred_at"]
    assert first["request_id"] == "req-dlq"
    assert first["handler"] == f"{doomed.name}.handle"
    assert first["queue"] == f"evt-producer-thing.happened--{doomed.name}.handle"
    assert first["attempts"] == 1
    assert first["replays"] == 0
    assert "ValidationFailed" in first["error"]
    assert first["dead_lettered_at"]
    assert "payload" not in first
    assert SECRET not in json.dumps(listed)

    limited = doomed.listed(limit=2)
    assert limited["count"] == 3 and len(limited["messages"]) == 2
    shown = doomed.listed(show_payload=True)["messages"]
    assert shown[1]["payload"] == envelopes[1]
    assert doomed.count() == 3


def test_list_of_a_service_that_never_dead_lettered(rabbit_config, unique_name):
    name = unique_name("clean")
    assert dlq.list_dead_letters([name], uri=rabbit_config["AMQP_URI"]) == {
        name: {"count": None, "messages": []}}


def test_replay_sends_only_the_chosen_event_back_to_its_handler_once(doomed):
    keep, fixed = doomed.dead("keep", "fixed")
    doomed.refuse.discard("fixed")  # the operator fixed the cause
    del doomed.calls[:]

    assert dlq.replay([doomed.name], event_id=fixed["event_id"], dry_run=True, uri=doomed.uri)[0][
        "replayed_to"] is None
    assert doomed.count() == 2 and doomed.calls == []

    done = dlq.replay([doomed.name], event_id=fixed["event_id"], uri=doomed.uri)
    assert [(entry["event_id"], entry["replayed_to"]) for entry in done] == [
        (fixed["event_id"], f"evt-producer-thing.happened--{doomed.name}.handle")]
    wait_for(lambda: doomed.calls == ["fixed"], message="the replayed event handled")
    assert [entry["event_id"] for entry in doomed.listed()["messages"]] == [keep["event_id"]]
    with pytest.raises(CommandFailed):
        dlq.replay([doomed.name], uri=doomed.uri)  # neither one event nor --all


def test_replay_goes_to_the_failed_handler_only(doomed, container_factory, rabbit_config, unique_name):
    other_calls = []
    container_factory(make_service(unique_name("other"), other_calls, set()), rabbit_config).start()
    (envelope,) = doomed.dead("poison")
    wait_for(lambda: other_calls == ["poison"], message="the other subscriber handled it")
    doomed.refuse.clear()

    dlq.replay([doomed.name], everything=True, uri=doomed.uri)
    wait_for(lambda: doomed.calls == ["poison", "poison"], message="the replay")
    assert other_calls == ["poison"]
    assert doomed.count() == 0


def test_a_replayed_event_that_fails_again_is_dead_lettered_again_with_a_fresh_round(doomed):
    (envelope,) = doomed.dead("poison")
    dlq.replay([doomed.name], event_id=envelope["event_id"], uri=doomed.uri)
    wait_for(lambda: doomed.calls == ["poison", "poison"], message="the replay")
    wait_for(lambda: doomed.count() == 1, message="dead-lettered again")
    (entry,) = doomed.listed()["messages"]
    assert entry["event_id"] == envelope["event_id"]
    assert entry["attempts"] == 1  # a fresh round of attempts ...
    assert entry["replays"] == 1  # ... after one replay
    assert entry["request_id"] == "req-dlq"  # the actor's context travels with it


def test_replay_to_a_queue_that_is_gone_fails_and_keeps_the_dead_letter(doomed):
    (envelope,) = doomed.dead("poison")
    with dlq.connect(doomed.uri) as connection:
        channel = connection.channel()
        channel.queue_delete(f"evt-producer-thing.happened--{doomed.name}.handle")
        channel.close()
    with pytest.raises(CommandFailed, match="does not exist"):
        dlq.replay([doomed.name], event_id=envelope["event_id"], uri=doomed.uri)
    assert [entry["event_id"] for entry in doomed.listed()["messages"]] == [envelope["event_id"]]


def test_purge_removes_only_the_chosen_event(doomed):
    gone, kept = doomed.dead("gone", "kept")
    removed = dlq.purge([doomed.name], event_id=gone["event_id"], uri=doomed.uri)
    assert [entry["event_id"] for entry in removed] == [gone["event_id"]]
    assert [entry["event_id"] for entry in doomed.listed()["messages"]] == [kept["event_id"]]


def test_command_line(doomed, capsys):
    (envelope,) = doomed.dead("poison")
    base = ["--amqp-uri", doomed.uri, "--service", doomed.name]

    assert main(["dlq", "list", *base]) == 0
    text = capsys.readouterr().out
    assert f"{dead_letter_queue_name(doomed.name)}: 1 message(s)" in text
    assert envelope["event_id"] in text and f"handler {doomed.name}.handle" in text
    assert SECRET not in text

    assert main(["dlq", "list", *base, "--json", "--show-payload"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[doomed.name]["messages"][0]["payload"]["data"]["name"] == SECRET

    assert main(["dlq", "purge", *base, "--all"]) == 2  # not without --yes
    assert "--yes" in capsys.readouterr().err
    assert main(["dlq", "replay", *base, "--event-id", "no-such-event"]) == 1
    capsys.readouterr()
    assert main(["dlq", "replay", *base, "--all", "--dry-run"]) == 0
    assert "1 dead letter(s) would be replayed" in capsys.readouterr().out
    assert main(["dlq", "purge", *base, "--event-id", envelope["event_id"], "--yes"]) == 0
    assert "1 dead letter(s) purged" in capsys.readouterr().out
    assert doomed.count() == 0
