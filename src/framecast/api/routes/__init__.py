"""The API's routes, one router per concern; ``framecast.api.app`` includes each of them."""
