package inbound

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"sync"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"

	"ptrelay/config"
)

// maxCachedCredentials bounds the verified-credential cache; a LAN relay has a handful of accounts.
const maxCachedCredentials = 1024

// userTable checks AUTH credentials against the bcrypt hashes of smtp.users. bcrypt costs ~90 ms at the default
// cost, which would cap a connector that authenticates once per message at ~11 messages/s per core; so a
// credential that verified once is remembered, keyed by the user and an HMAC of the password under a key that
// exists only in this process. The cache holds no password and no hash an attacker could test offline, and it
// dies with the table: a reload (new users or passwords) starts empty.
type userTable struct {
	hashes map[string][]byte
	key    [32]byte

	mu    sync.Mutex
	cache map[string]struct{}

	dummyOnce sync.Once
	dummy     []byte // a hash at the users' cost, compared for unknown names
	cost      int
}

func newUserTable(users []config.User) (*userTable, error) {
	t := &userTable{hashes: make(map[string][]byte, len(users)), cache: make(map[string]struct{})}
	for i, u := range users {
		if u.Name == "" {
			return nil, fmt.Errorf("smtp.users[%d]: name is empty", i)
		}
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			return nil, fmt.Errorf("smtp.users[%d] (%s): password_hash is not a bcrypt hash: make one with `ptrelay hash-password`", i, u.Name)
		}
		t.hashes[u.Name] = []byte(u.PasswordHash)
		if c, _ := bcrypt.Cost([]byte(u.PasswordHash)); c > t.cost {
			t.cost = c
		}
	}
	if _, err := rand.Read(t.key[:]); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *userTable) empty() bool { return len(t.hashes) == 0 }

func (t *userTable) cacheKey(user, pass string) string {
	m := hmac.New(sha256.New, t.key[:])
	m.Write([]byte(pass))
	return user + "\x00" + string(m.Sum(nil))
}

// check reports whether pass is user's password. Unknown users cost a bcrypt comparison too, so the reply
// time does not tell which account names exist (at the configured users' cost).
func (t *userTable) check(user, pass string) bool {
	hash, ok := t.hashes[user]
	if !ok {
		t.dummyOnce.Do(func() {
			t.dummy, _ = bcrypt.GenerateFromPassword([]byte("ptrelay-no-such-user"), max(t.cost, bcrypt.MinCost))
		})
		_ = bcrypt.CompareHashAndPassword(t.dummy, []byte(pass))
		return false
	}
	key := t.cacheKey(user, pass)
	t.mu.Lock()
	_, hit := t.cache[key]
	t.mu.Unlock()
	if hit {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	t.mu.Lock()
	if len(t.cache) >= maxCachedCredentials {
		for k := range t.cache { // evict an arbitrary entry: map order is random enough for a bound
			delete(t.cache, k)
			break
		}
	}
	t.cache[key] = struct{}{}
	t.mu.Unlock()
	return true
}

// loginServer is the server side of AUTH LOGIN (draft-murchison-sasl-login), which go-sasl no longer has.
// Exchange sends `AUTH LOGIN` and answers the Username:/Password: prompts; .NET and Python send the user name
// as an initial response and then expect only the Password: prompt.
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

var (
	promptUser = []byte("Username:")
	promptPass = []byte("Password:")
)

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if response == nil { // no initial response
			l.step = 1
			return promptUser, false, nil
		}
		l.user = string(response)
		l.step = 2
		return promptPass, false, nil
	case 1:
		l.user = string(response)
		l.step = 2
		return promptPass, false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}

// plainIdentityOK accepts an empty authorization identity or one equal to the user: nobody may act for another.
func plainIdentityOK(identity, user string) bool {
	return identity == "" || subtle.ConstantTimeCompare([]byte(identity), []byte(user)) == 1
}
