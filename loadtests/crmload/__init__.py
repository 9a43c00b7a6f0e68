"""The CRM's locust suite: personas (personas.py), the AMQP user that loads one
service without the gateway (amqp_user.py), the accounts they sign in with
(accounts.py) and the test data they send (data.py). loadtests/locustfile.py
puts them together."""
