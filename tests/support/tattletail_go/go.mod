module stream-processor/tattletail-golden

go 1.22

require (
	github.com/itchyny/gojq v0.12.4
	github.com/slack-go/slack v0.9.1
)

require (
	github.com/gorilla/websocket v1.4.2 // indirect
	github.com/itchyny/timefmt-go v0.1.3 // indirect
	github.com/pkg/errors v0.8.0 // indirect
)
