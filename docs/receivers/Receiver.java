// An order service receiving neu-gateway's signed deliveries, with the JDK alone (11+).
//
// Each payment the gateway confirmed arrives as a POST signed as Standard Webhooks sign: the
// service checks the signature over the exact bytes received before it trusts a word of them.
//
//     PORT=9000 NEU_SIGNING_SECRET=whsec_... java Receiver.java
//
// NEU_SIGNING_SECRET is the secret in the app's callbacks.signing_secret_file, shared with the
// gateway and no one else.

import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.time.Instant;
import java.util.Base64;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class Receiver {
    static final String SECRET = System.getenv("NEU_SIGNING_SECRET");
    // A delivery recorded and sent again later is refused once this much time has passed.
    static final long TOLERANCE_S = 5 * 60;
    // A trade's detail is a few hundred bytes; nothing near this is a delivery.
    static final int MAX_BODY = 1 << 20;

    /** Why a request is not a delivery signed with our secret. */
    static class RefusedException extends Exception {
        RefusedException(String reason) {
            super(reason);
        }
    }

    /** The delivery's webhook-id, once its headers and signature hold. */
    static String verify(Headers headers, byte[] key, byte[] body) throws RefusedException {
        String messageId = headers.getFirst("webhook-id");
        String timestamp = headers.getFirst("webhook-timestamp");
        String signatures = headers.getFirst("webhook-signature");
        if (empty(messageId) || empty(timestamp) || empty(signatures)) {
            throw new RefusedException("missing webhook-id, webhook-timestamp or webhook-signature");
        }
        if (!timestamp.matches("[0-9]{1,12}")) {
            throw new RefusedException("webhook-timestamp is not unix seconds");
        }
        if (Math.abs(Instant.now().getEpochSecond() - Long.parseLong(timestamp)) > TOLERANCE_S) {
            throw new RefusedException("webhook-timestamp is more than 5 minutes from now");
        }
        byte[] signed = (messageId + "." + timestamp + ".").getBytes(StandardCharsets.UTF_8);
        String digest = Base64.getEncoder().encodeToString(hmacSha256(key, signed, body));
        byte[] expected = ("v1," + digest).getBytes(StandardCharsets.UTF_8);
        // Several during a rotation of the secret: one made with ours is enough. isEqual takes
        // as long wherever the bytes differ, so the time taken tells nothing of them.
        for (String given : signatures.split(" ")) {
            if (MessageDigest.isEqual(expected, given.getBytes(StandardCharsets.UTF_8))) {
                return messageId;
            }
        }
        throw new RefusedException("no signature matches");
    }

    static void handle(HttpExchange exchange, byte[] key) throws IOException {
        try {
            // The bytes as sent: the signature is over them, not over any parse of them.
            byte[] body = exchange.getRequestBody().readNBytes(MAX_BODY + 1);
            if (body.length > MAX_BODY) {
                throw new RefusedException("a body over 1 MiB");
            }
            String messageId = verify(exchange.getRequestHeaders(), key, body);
            // Only now parse the JSON, check amount and currency against the order, and act
            // once per webhook-id (the gateway sends a delivery again until it gets a 2xx):
            // e.g. insert it into a table with a unique key in the transaction that marks the
            // order paid.
            System.out.println("verified " + messageId + " " + new String(body, StandardCharsets.UTF_8));
            exchange.sendResponseHeaders(204, -1);
        } catch (RefusedException refused) {
            System.out.println("refused " + refused.getMessage());
            byte[] answer = (refused.getMessage() + "\n").getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", "text/plain");
            exchange.sendResponseHeaders(400, answer.length);
            exchange.getResponseBody().write(answer);
        } finally {
            exchange.close();
        }
    }

    static byte[] hmacSha256(byte[] key, byte[] first, byte[] rest) {
        try {
            Mac hmac = Mac.getInstance("HmacSHA256");
            hmac.init(new SecretKeySpec(key, "HmacSHA256"));
            hmac.update(first);
            return hmac.doFinal(rest);
        } catch (GeneralSecurityException missing) {
            throw new IllegalStateException("every JDK has HmacSHA256", missing);
        }
    }

    static boolean empty(String value) {
        return value == null || value.isEmpty();
    }

    public static void main(String[] args) throws IOException {
        if (SECRET == null || !SECRET.startsWith("whsec_")) {
            System.err.println("NEU_SIGNING_SECRET must be a whsec_... secret");
            System.exit(1);
        }
        byte[] key = Base64.getDecoder().decode(SECRET.substring("whsec_".length()));
        String port = System.getenv("PORT");
        InetSocketAddress address = new InetSocketAddress("127.0.0.1", empty(port) ? 9000 : Integer.parseInt(port));
        HttpServer server = HttpServer.create(address, 0);
        server.createContext("/", exchange -> handle(exchange, key));
        server.start();
        System.out.println("listening on 127.0.0.1:" + server.getAddress().getPort());
    }
}
