package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts that make each state change atomic. Each touches only the
// keys it declares, all in one hash slot, and uses only commands that Redis
// (6.2 and later) and Valkey both have.
//
// The request hash has the fields
//
//	v  version, incremented by every update: the compare-and-set token
//	d  the JSON of the ciba.AuthRequest
//	a  the ApprovalID, so DeleteRequest can remove the index key
//	x  the expiry of the key in Unix milliseconds
//	w  a random token naming the last write, so that a write the client
//	   library resent after a lost reply is recognized as already applied
//	p  the ciba.Pace as "interval not_before hold_until" in milliseconds,
//	   absent until the first poll (pace.go)
var (
	// createScript creates the request hash unless the key exists.
	// KEYS[1] request key; ARGV data, approval id, expiry ms, write token.
	// Returns 1 if created (or created by this very write), 0 if taken.
	createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'w') == ARGV[4] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'v', '1', 'd', ARGV[1], 'a', ARGV[2], 'x', ARGV[3], 'w', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
`)

	// updateScript replaces the request if its version is unchanged, and
	// publishes its id.
	// KEYS[1] request key; ARGV version read, data, expiry ms, write token,
	// channel, id. Returns 1 if written (or written by this very write), 0 on
	// a version conflict, -1 if the request is gone.
	updateScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'v')
if v == false then return -1 end
if v ~= ARGV[1] then
  if redis.call('HGET', KEYS[1], 'w') == ARGV[4] then return 1 end
  return 0
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'd', ARGV[2], 'x', ARGV[3], 'w', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
`)

	// deleteScript deletes the request and publishes its id.
	// KEYS[1] request key; ARGV channel, id. Returns the ApprovalID of the
	// deleted request, or nil if there was none.
	deleteScript = redis.NewScript(`
local a = redis.call('HGET', KEYS[1], 'a')
if a == false then return false end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return a
`)

	// paceScript replaces the pace state if it is unchanged.
	// KEYS[1] request key; ARGV pace read ('' for none), new pace.
	// Returns 1 if written, 0 on a conflict, -1 if the request is gone.
	paceScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local p = redis.call('HGET', KEYS[1], 'p')
if p == false then p = '' end
if p ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'p', ARGV[2])
return 1
`)

	// swapScript replaces a record if it holds the value given: the
	// compare-and-set of records (Store.SwapRecord).
	// KEYS[1] record key; ARGV had old ('1' or '0'), old, has new, new.
	// Returns 1 if swapped, 0 if the record holds another value.
	swapScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if cur ~= false then return 0 end
elseif cur ~= ARGV[2] then return 0 end
if ARGV[3] == '0' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[4]) end
return 1
`)

	// unindexScript deletes an ApprovalID index key if it still names the
	// request. KEYS[1] index key; ARGV id. Returns the number deleted.
	unindexScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
)
