package smtp_test

import (
	"io"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// ErrorText sees every error reply, go-smtp's own and the Backend's, and no
// other reply.
func TestServer_ErrorText(t *testing.T) {
	be, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) {
		s.MaxMessageBytes = 1000
		s.MaxRecipients = 1
		s.ErrorText = func(c *smtp.Conn, code int, enhCode smtp.EnhancedCode, text string) string {
			if c == nil || enhCode[0] != code/100 {
				return "bad arguments"
			}
			return text + " (ref 42)"
		}
	})
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	io.WriteString(c, "XXXX\r\n")
	expectReply(t, scanner, "500 5.5.2 Syntax errors, XXXX command unrecognized (ref 42)")
	io.WriteString(c, "MAIL FROM:<root@nsa.gov> SIZE=5000\r\n")
	expectReply(t, scanner, "552 5.3.4 Max message size exceeded (ref 42)")
	io.WriteString(c, "MAIL FROM:<root@nsa.gov>\r\n")
	expectReply(t, scanner, "250 2.0.0 Roger, accepting mail from <root@nsa.gov>")
	io.WriteString(c, "RCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n")
	expectReply(t, scanner, "250 ")
	expectReply(t, scanner, "452 4.5.3 Maximum limit of 1 recipients reached (ref 42)")
	io.WriteString(c, "RSET\r\n")
	expectReply(t, scanner, "250 2.0.0 Session reset")

	be.userErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Go away"}
	io.WriteString(c, "MAIL FROM:<root@nsa.gov>\r\n")
	expectReply(t, scanner, "550 5.7.1 Go away (ref 42)")
}
