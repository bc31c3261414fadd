"""HTTP/1.x: framing rules, request and response heads, chunked bodies, and the exchange tracker."""
