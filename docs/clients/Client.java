// An internal service calling the platform through neu-gateway, with the JDK alone (11+).
//
// It never sees the app secret and never signs: the gateway adds appid, timestamp and sign.
// It names itself with its caller token and the app with X-Neu-App.
//
//     NEU_GATEWAY_URL=http://127.0.0.1:8080 NEU_GATEWAY_TOKEN=... java Client.java LOGIN_CODE
//
// LOGIN_CODE is the one-time code the mini app's front end got from neu.login().

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

public class Client {
    static final String GATEWAY = env("NEU_GATEWAY_URL", "http://127.0.0.1:8080");
    // This service's caller token, never the app secret.
    static final String TOKEN = System.getenv("NEU_GATEWAY_TOKEN");
    // The app's name in gateway.yaml, not its appid.
    static final String APP = env("NEU_APP", "demo");
    // Where the platform posts the payment's outcome: the gateway's callbacks listener.
    static final String NOTIFY_URL = env("NEU_NOTIFY_URL", "https://shop.example.com/superpay/notify");
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    /** A refusal: the gateway's own (its `error` code) or the platform's (in the envelope). */
    static class PlatformException extends Exception {
        PlatformException(String message) {
            super(message);
        }
    }

    /** One call through the gateway; the answer's body when the platform said 200. */
    static String call(String method, String path, Map<String, String> params) throws Exception {
        String form = params.entrySet().stream()
                .map(e -> encode(e.getKey()) + "=" + encode(e.getValue()))
                .collect(Collectors.joining("&"));
        HttpRequest.Builder request = HttpRequest.newBuilder()
                .timeout(Duration.ofSeconds(30))
                .header("Authorization", "Bearer " + TOKEN)
                .header("X-Neu-App", APP)
                .header("X-Request-Id", "orders-" + UUID.randomUUID()); // in the gateway's access log
        if (method.equals("GET")) {
            request.uri(URI.create(GATEWAY + path + "?" + form)).GET();
        } else {
            request.uri(URI.create(GATEWAY + path))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .POST(HttpRequest.BodyPublishers.ofString(form));
        }
        HttpResponse<String> answer = HTTP.send(request.build(), HttpResponse.BodyHandlers.ofString());
        String body = answer.body();
        if (answer.statusCode() != 200) {
            // The gateway's own errors: the same envelope, with a stable `error` code.
            throw new PlatformException(path + ": " + answer.statusCode() + " " + field(body, "error").orElse(""));
        }
        String status = field(body, "status").orElse("");
        if (!status.equals("200")) {
            // The platform answers its own refusals with HTTP 200 and the status in the envelope.
            throw new PlatformException(path + ": " + status + " " + field(body, "msg").orElse(""));
        }
        return body;
    }

    public static void main(String[] args) throws Exception {
        String code = args[0];
        try {
            String login = call("POST", "/neuopenapi/oauth/mini/accessToken",
                    params("code", code, "grantType", "authorization_code", "scope", "user.info"));
            String user = call("GET", "/neuopenapi/oauth/mini/user/info",
                    params("accessToken", need(login, "accessToken")));
            String openId = need(user, "openId");
            String trade = call("POST", "/neuopenapi/pay/transactions/trade",
                    params("outTradeNo", "order-" + UUID.randomUUID().toString().substring(0, 12),
                            "amount", "1999", "currency", "SAR", "openId", openId,
                            "notifyUrl", NOTIFY_URL));
            String tradeNo = need(trade, "tradeNo");
            String detail = call("GET", "/neuopenapi/pay/transactions/tradedetail", params("tradeNo", tradeNo));
            System.out.println("openId=" + openId + " tradeNo=" + tradeNo
                    + " status=" + need(detail, "transactionStatus"));
        } catch (PlatformException refused) {
            System.err.println("refused: " + refused.getMessage());
            System.exit(1);
        }
    }

    // The JDK has no JSON parser: the envelope's fields used here are flat strings and numbers,
    // so a pattern finds them. A real service would use its JSON library (Jackson, Gson).
    static Optional<String> field(String json, String name) {
        Matcher match = Pattern.compile("\"" + Pattern.quote(name) + "\"\\s*:\\s*(?:\"([^\"\\\\]*)\"|(-?\\d+))")
                .matcher(json);
        if (!match.find()) {
            return Optional.empty();
        }
        return Optional.of(match.group(1) != null ? match.group(1) : match.group(2));
    }

    static String need(String json, String name) throws PlatformException {
        return field(json, name).orElseThrow(() -> new PlatformException("no " + name + " in " + json));
    }

    static Map<String, String> params(String... keysAndValues) {
        Map<String, String> params = new LinkedHashMap<>();
        for (int i = 0; i < keysAndValues.length; i += 2) {
            params.put(keysAndValues[i], keysAndValues[i + 1]);
        }
        return params;
    }

    static String encode(String value) {
        return URLEncoder.encode(value, StandardCharsets.UTF_8);
    }

    static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }
}
