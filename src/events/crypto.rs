//! The cryptography of event deliveries: the signature over the raw body, AES-256-CBC
//! decryption (and encryption, for the simulator and the tests), constant-time comparison.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine;
use sha2::{Digest, Sha256};

type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;

/// `hex(sha256(timestamp + nonce + encrypt_key + body))`.
pub fn signature(timestamp: &str, nonce: &str, encrypt_key: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(timestamp.as_bytes());
    hash.update(nonce.as_bytes());
    hash.update(encrypt_key.as_bytes());
    hash.update(body);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Decrypts an `encrypt` field: base64 → IV (first 16 bytes) + AES-256-CBC ciphertext with
/// key = SHA-256(encrypt_key), PKCS#7 padding.
pub fn decrypt(encrypt_key: &str, encrypted: &str) -> Result<Vec<u8>, String> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(encrypted.trim())
        .map_err(|e| format!("encrypt is not base64: {e}"))?;
    if data.len() < 32 || !(data.len() - 16).is_multiple_of(16) {
        return Err(format!(
            "encrypt holds {} bytes: not an IV plus whole AES blocks",
            data.len()
        ));
    }
    let key: [u8; 32] = Sha256::digest(encrypt_key.as_bytes()).into();
    let (iv, ciphertext) = data.split_at(16);
    let mut buffer = ciphertext.to_vec();
    let plain = Aes256CbcDec::new(&key.into(), iv.into())
        .decrypt_padded_mut::<Pkcs7>(&mut buffer)
        .map_err(|_| "decryption failed (wrong encrypt_key?)".to_owned())?;
    Ok(plain.to_vec())
}

/// The inverse of [`decrypt`] with the given IV (the simulator's and the tests' side).
pub fn encrypt(encrypt_key: &str, plaintext: &[u8], iv: [u8; 16]) -> String {
    let key: [u8; 32] = Sha256::digest(encrypt_key.as_bytes()).into();
    let mut buffer = vec![0u8; plaintext.len() + 16];
    buffer[..plaintext.len()].copy_from_slice(plaintext);
    let cipher_len = Aes256CbcEnc::new(&key.into(), &iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buffer, plaintext.len())
        .map(<[u8]>::len)
        .unwrap_or(0);
    let mut out = iv.to_vec();
    out.extend_from_slice(&buffer[..cipher_len]);
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// Equal-time comparison of two ASCII strings.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
