"""A third-party application: a store-backed collection and a custom RUN endpoint.

Serve it beside the built-in applications:

    flowbus serve --app examples.custom_app:create_app

then call it:

    flowbus call lab/sensor CREATE --data '{"name": "t1", "celsius": 21.5}'
    flowbus call lab/convert RUN --objectid fahrenheit --data '{"celsius": 100}'
"""

from typing import Any

from flowbus import Application, Call, Collection, Endpoint, InvalidData, NoSuchEndpoint

SENSOR_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "celsius": {"type": "number"}},
}


class Convert(Endpoint):
    """RUN converts a temperature; the object id names the target unit."""

    description = "Convert a temperature given in Celsius"

    async def run(self, call: Call) -> dict[str, Any]:
        data = call.data if isinstance(call.data, dict) else {}
        celsius = data.get("celsius")
        if not isinstance(celsius, (int, float)):
            raise InvalidData("'celsius' must be a number", field="celsius")
        if call.objectid == "fahrenheit":
            return {"fahrenheit": celsius * 9 / 5 + 32}
        if call.objectid == "kelvin":
            return {"kelvin": celsius + 273.15}
        raise NoSuchEndpoint(f"No conversion to {call.objectid!r}")


def create_app() -> Application:
    """Build the application; `flowbus serve --app examples.custom_app:create_app` calls this."""
    app = Application("lab", description="A small example application")
    app.add(Collection("lab/sensor", schema=SENSOR_SCHEMA, searchable=["name"]))
    app.add(Convert("lab/convert"))
    return app
