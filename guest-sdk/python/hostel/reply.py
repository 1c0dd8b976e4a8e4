"""An outbound call's answer, read whole: the same in both editions (`hostel.fetch`,
`hostel_service.fetch`)."""

from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")
