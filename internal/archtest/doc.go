// Package archtest holds tests of the shape of the code: which package may
// import which. It has no code of its own.
package archtest
