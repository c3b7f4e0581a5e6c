// Golden payloads for the tests of stream_processor/alerts/tattletail.py: what cloudtrail-tattletail sends,
// produced by the same Go libraries it builds with (encoding/json, gojq v0.12.4, slack-go v0.9.1).
//
// Input, one JSON object a line: {"name", "description", "jq_match", "event"} with the event as raw JSON text.
// Output, one JSON object a line: {"matched", "sns", "ses_subject", "ses_body", "slack"}, each payload as the
// exact text tattletail would send (matched false: the rule does not fire, no payload).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"reflect"

	"github.com/itchyny/gojq"
	"github.com/slack-go/slack"
)

type input struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	JqMatch     string `json:"jq_match"`
	Event       string `json:"event"`
}

// The SNS message: these four keys, in this order (tattletail's destsns payload).
type snsPayload struct {
	Name   string                 `json:"name"`
	Desc   string                 `json:"description"`
	Record map[string]interface{} `json:"record"`
	Match  interface{}            `json:"match"`
}

type output struct {
	Matched    bool   `json:"matched"`
	SNS        string `json:"sns"`
	SESSubject string `json:"ses_subject"`
	SESBody    string `json:"ses_body"`
	Slack      string `json:"slack"`
}

// match runs the rule as tattletail does: the first output; none, null, false or an error is no match.
func match(query *gojq.Query, record map[string]interface{}) (bool, interface{}) {
	next, ok := query.Run(record).Next()
	if !ok || next == nil {
		return false, nil
	}
	if _, isErr := next.(error); isErr {
		return false, nil
	}
	if b, isBool := next.(bool); isBool {
		return b, b
	}
	return true, next
}

// matchText is the indented match, empty when the match is the record itself.
func matchText(record map[string]interface{}, matched interface{}) string {
	if m, isMap := matched.(map[string]interface{}); isMap && reflect.DeepEqual(record, m) {
		return ""
	}
	text, err := json.MarshalIndent(matched, "", "  ")
	if err != nil {
		return ""
	}
	return string(text)
}

func render(in input) (output, error) {
	var record map[string]interface{}
	if err := json.Unmarshal([]byte(in.Event), &record); err != nil {
		return output{}, err
	}
	query, err := gojq.Parse(in.JqMatch)
	if err != nil {
		return output{}, err
	}
	ok, matched := match(query, record)
	if !ok {
		return output{Matched: false}, nil
	}
	sns, err := json.Marshal(snsPayload{Name: in.Name, Desc: in.Description, Record: record, Match: matched})
	if err != nil {
		return output{}, err
	}
	event, err := json.MarshalIndent(record, "", "  ")
	if err != nil {
		return output{}, err
	}
	shown := matchText(record, matched)
	body := fmt.Sprintf("Alert: %s\n\n%s\n\n\nevent:\n%s\n", in.Name, in.Description, event)
	if shown != "" {
		body += "match: " + shown + "\n"
	}
	message := slack.WebhookMessage{
		IconEmoji: "red_circle",
		Username:  "Cloudtrail Tattletail",
		Attachments: []slack.Attachment{{
			Color: "danger",
			Title: "Cloudtrail Tattletail Event",
			Text:  string(event),
			Fields: []slack.AttachmentField{
				{Title: "Alert Name", Value: in.Name, Short: true},
				{Title: "Description", Value: in.Description, Short: true},
			},
		}},
	}
	if shown != "" {
		message.Attachments[0].Fields = append(message.Attachments[0].Fields,
			slack.AttachmentField{Title: "Match", Value: shown})
	}
	slackBody, err := json.Marshal(&message) // what slack.PostWebhook posts
	if err != nil {
		return output{}, err
	}
	return output{true, string(sns), "Cloudtrail Tattletail event", body, string(slackBody)}, nil
}

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<26)
	encoder := json.NewEncoder(os.Stdout)
	for scanner.Scan() {
		var in input
		if err := json.Unmarshal(scanner.Bytes(), &in); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out, err := render(in)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := encoder.Encode(out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
