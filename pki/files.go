package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gatehouse-dev/gatehouse/identity"
)

const (
	// keyMode is the mode of every private key file.
	keyMode = 0o600

	// certMode is the mode of every certificate file.
	certMode = 0o644

	// dirMode is the mode of a directory created for certificates.
	dirMode = 0o700

	pemCertificate = "CERTIFICATE"
	pemPrivateKey  = "PRIVATE KEY"
)

// ErrNoPEM marks a file that holds none of the PEM blocks looked for.
var ErrNoPEM = errors.New("no PEM block found")

// EncodeCerts returns certs as concatenated PEM CERTIFICATE blocks.
func EncodeCerts(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: pemCertificate, Bytes: c.Raw})
	}

	return b.Bytes()
}

// EncodeKey returns key as a PEM PKCS #8 PRIVATE KEY block.
func EncodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}

	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// ParseCerts parses every PEM CERTIFICATE block in data, in order, and
// ignores other blocks. No block at all gives ErrNoPEM.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate

	for rest := data; ; {
		var block *pem.Block

		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}

		if block.Type != pemCertificate {
			continue
		}

		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}

		certs = append(certs, cert)
	}

	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: want %s", ErrNoPEM, pemCertificate)
	}

	return certs, nil
}

// ParseKey parses the first PEM PRIVATE KEY (PKCS #8) block in data, which
// must hold an ECDSA key.
func ParseKey(data []byte) (*ecdsa.PrivateKey, error) {
	for rest := data; ; {
		var block *pem.Block

		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: want %s", ErrNoPEM, pemPrivateKey)
		}

		if block.Type != pemPrivateKey {
			continue
		}

		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}

		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key is %T, want ECDSA", key)
		}

		return ec, nil
	}
}

// WriteFiles writes the leaf's certificate to certFile and its key to
// keyFile (mode 0600), key first, so a watcher never pairs the new
// certificate with the old key for long.
func (l *Leaf) WriteFiles(certFile, keyFile string) error {
	keyPEM, err := EncodeKey(l.Key)
	if err != nil {
		return fmt.Errorf("write key of %s: %w", l.ID, err)
	}

	if err := WriteFileAtomic(keyFile, keyPEM, keyMode); err != nil {
		return fmt.Errorf("write key of %s: %w", l.ID, err)
	}

	if err := WriteFileAtomic(certFile, EncodeCerts(l.Cert), certMode); err != nil {
		return fmt.Errorf("write certificate of %s: %w", l.ID, err)
	}

	return nil
}

// LoadLeaf reads a leaf certificate and its key and checks that they belong
// together and that the certificate carries an identity. It does not verify
// the certificate against any CA.
func LoadLeaf(certFile, keyFile string) (*Leaf, error) {
	certs, err := readCerts(certFile)
	if err != nil {
		return nil, err
	}

	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}

	cert := certs[0]
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("key %q does not match certificate %q", keyFile, certFile)
	}

	id, err := identity.FromCertificate(cert)
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", certFile, err)
	}

	return &Leaf{Cert: cert, Key: key, ID: id}, nil
}

// WriteFiles writes the CA certificate to certFile and its key to keyFile
// (mode 0600). Extra certificates (older CAs still trusted during a
// rotation) are appended to certFile after the CA's own.
func (ca *CA) WriteFiles(certFile, keyFile string, extra ...*x509.Certificate) error {
	keyPEM, err := EncodeKey(ca.Key)
	if err != nil {
		return fmt.Errorf("write ca key: %w", err)
	}

	if err := WriteFileAtomic(keyFile, keyPEM, keyMode); err != nil {
		return fmt.Errorf("write ca key: %w", err)
	}

	bundle := EncodeCerts(append([]*x509.Certificate{ca.Cert}, extra...)...)
	if err := WriteFileAtomic(certFile, bundle, certMode); err != nil {
		return fmt.Errorf("write ca certificate: %w", err)
	}

	return nil
}

// LoadCA reads a CA: the first certificate of certFile (a bundle may follow
// it) and the key in keyFile, which must match it. It returns the CA and
// every certificate of the bundle, the CA's own first.
func LoadCA(certFile, keyFile string) (*CA, []*x509.Certificate, error) {
	certs, err := readCerts(certFile)
	if err != nil {
		return nil, nil, err
	}

	key, err := readKey(keyFile)
	if err != nil {
		return nil, nil, err
	}

	cert := certs[0]
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("first certificate of %q is not a CA", certFile)
	}

	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("key %q does not match the first certificate of %q",
			keyFile, certFile)
	}

	td := ""
	if len(cert.URIs) == 1 && cert.URIs[0].Scheme == identity.Scheme {
		td = cert.URIs[0].Host
	}

	return &CA{Cert: cert, Key: key, TrustDomain: td}, certs, nil
}

// WriteFileAtomic writes data to a temporary file next to path with mode
// perm and renames it over path, creating the directory (mode 0700) if
// needed. Readers see the old or the new content, never a mix.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("create directory %q: %w", dir, err)
	}

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file for %q: %w", path, err)
	}

	name := tmp.Name()
	defer func() { _ = os.Remove(name) }() // a no-op once renamed

	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("chmod %q: %w", name, err)
	}

	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %q: %w", name, err)
	}

	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("sync %q: %w", name, err)
	}

	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %q: %w", name, err)
	}

	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("rename %q to %q: %w", name, path, err)
	}

	return nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}

	certs, err := ParseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("certificate file %q: %w", path, err)
	}

	return certs, nil
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}

	key, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("key file %q: %w", path, err)
	}

	return key, nil
}
