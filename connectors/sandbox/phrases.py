"""Short support messages in the languages of the sandbox's customers, for the world's message bodies.

Customers open a ticket neutral, negative or (rarely) positive about it, and their later messages
drift with the ticket (a frustrated customer may calm down or thank the agent). Agents answer in the
customer's language four times in five, else in English, so "answered in the customer's language" is
true of most tickets but not all. The texts are this project's own, written for the sandbox; each is
a whole sentence or two (never a single word, which could turn up anywhere in a store by chance), with
plain spaces only (Freshdesk's text bodies collapse other white space).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Final, Literal

Mood = Literal["neutral", "negative", "positive"]
MOODS: Final[tuple[Mood, ...]] = ("neutral", "negative", "positive")
OPENING_MOOD_WEIGHTS: Final = (50, 35, 15)
# How a customer's mood moves from one message to the next: mood -> weights of MOODS.
DRIFT: Final[dict[Mood, tuple[int, int, int]]] = {
    "neutral": (60, 25, 15), "negative": (30, 50, 20), "positive": (40, 0, 60)}
REPLY_IN_CUSTOMER_LANGUAGE: Final = 0.8
FALLBACK: Final = "en"

# language -> kind -> phrases. Kinds: open_<mood> (a customer's first message), more_<mood> (a later one),
# first_reply and update (an agent's public messages).
PHRASES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "en": {
        "open_neutral": ("Where is my order? It has not arrived yet.", "Can I still change the delivery address?",
                         "How do I return a jacket that is too small?"),
        "open_negative": ("Where is my order? It's been two weeks and nothing has arrived.",
                          "The parcel arrived damaged and I am really disappointed.",
                          "I was charged twice for the same order, this is unacceptable."),
        "open_positive": ("I love the shoes! Could I get the same pair in a bigger size?",
                          "Great service so far, I just have a quick question about my invoice."),
        "more_neutral": ("Any news on this, please?", "Could you tell me when it will be shipped?"),
        "more_negative": ("This is the third time I write and still no answer.",
                          "Still nothing. I want a refund now."),
        "more_positive": ("Thank you so much, that solved it!", "Perfect, the package just arrived. Thanks!"),
        "first_reply": ("Thanks for reaching out, let me check that for you.",
                        "Sorry for the trouble, I am looking into your order now."),
        "update": ("Here is an update: your order left our warehouse today.",
                   "I have issued the refund, you will see it in a few days."),
    },
    "de": {
        "open_neutral": ("Wo ist meine Bestellung? Sie ist noch nicht angekommen.",
                         "Kann ich die Lieferadresse noch ändern?",
                         "Wie kann ich eine zu kleine Jacke umtauschen?"),
        "open_negative": ("Wo ist meine Bestellung? Ich warte schon seit zwei Wochen.",
                          "Das Paket kam beschädigt an, ich bin sehr enttäuscht.",
                          "Mir wurde die Bestellung doppelt berechnet, das ist inakzeptabel."),
        "open_positive": ("Die Schuhe sind toll! Gibt es sie auch eine Nummer größer?",
                          "Super Service bisher, ich habe nur eine kurze Frage zur Rechnung."),
        "more_neutral": ("Gibt es schon Neuigkeiten?", "Wann wird die Bestellung verschickt?"),
        "more_negative": ("Ich schreibe jetzt zum dritten Mal und bekomme keine Antwort.",
                          "Immer noch nichts. Ich möchte mein Geld zurück."),
        "more_positive": ("Vielen Dank, das hat geholfen!", "Perfekt, das Paket ist heute angekommen. Danke!"),
        "first_reply": ("Danke für Ihre Nachricht, ich sehe mir das gleich an.",
                        "Entschuldigen Sie die Umstände, ich prüfe Ihre Bestellung."),
        "update": ("Kurzes Update: Ihre Bestellung hat heute unser Lager verlassen.",
                   "Die Erstattung ist veranlasst und in wenigen Tagen auf Ihrem Konto."),
    },
    "fr": {
        "open_neutral": ("Où en est ma commande ? Elle n'est pas encore arrivée.",
                         "Est-il possible de modifier l'adresse de livraison ?",
                         "Comment échanger une veste trop petite ?"),
        "open_negative": ("Où est ma commande ? Cela fait deux semaines que j'attends.",
                          "Le colis est arrivé abîmé, je suis très déçue.",
                          "J'ai été débité deux fois pour la même commande, c'est inadmissible."),
        "open_positive": ("J'adore les chaussures ! Les avez-vous en taille au-dessus ?",
                          "Service parfait jusqu'ici, juste une petite question sur ma facture."),
        "more_neutral": ("Avez-vous des nouvelles, s'il vous plaît ?", "Quand ma commande sera-t-elle expédiée ?"),
        "more_negative": ("C'est la troisième fois que j'écris, toujours aucune réponse.",
                          "Toujours rien. Je veux être remboursé."),
        "more_positive": ("Merci beaucoup, parfait !", "Le colis vient d'arriver, merci pour votre aide !"),
        "first_reply": ("Merci pour votre message, je regarde cela tout de suite.",
                        "Désolé pour ce désagrément, je vérifie votre commande."),
        "update": ("Votre commande a quitté notre entrepôt aujourd'hui.",
                   "Le remboursement est lancé, il apparaîtra sous quelques jours."),
    },
    "es": {
        "open_neutral": ("¿Dónde está mi pedido? Todavía no ha llegado.", "¿Puedo cambiar la dirección de envío?",
                         "¿Cómo cambio una chaqueta que me queda pequeña?"),
        "open_negative": ("¿Dónde está mi pedido? Llevo dos semanas esperando.",
                          "El paquete llegó roto y estoy muy decepcionada.",
                          "Me han cobrado dos veces el mismo pedido, es inaceptable."),
        "open_positive": ("¡Me encantan las zapatillas! ¿Las tenéis en una talla más?",
                          "Muy buen servicio, solo tengo una pregunta sobre la factura."),
        "more_neutral": ("¿Hay alguna novedad, por favor?", "¿Cuándo enviarán mi pedido?"),
        "more_negative": ("Es la tercera vez que escribo y nadie me responde.",
                          "Sigo sin nada. Quiero que me devuelvan el dinero."),
        "more_positive": ("¡Muchas gracias, problema resuelto!", "Perfecto, el paquete ya llegó. ¡Gracias!"),
        "first_reply": ("Gracias por escribirnos, lo reviso ahora mismo.",
                        "Sentimos las molestias, estoy revisando su pedido."),
        "update": ("Su pedido ha salido hoy de nuestro almacén.",
                   "Hemos tramitado el reembolso, lo verá en unos días."),
    },
    "it": {
        "open_neutral": ("Dov'è il mio ordine? Non è ancora arrivato.",
                         "Posso ancora cambiare l'indirizzo di consegna?",
                         "Come posso cambiare una giacca troppo piccola?"),
        "open_negative": ("Dov'è il mio ordine? Aspetto da due settimane.",
                          "Il pacco è arrivato danneggiato, sono molto delusa.",
                          "Mi avete addebitato due volte lo stesso ordine, è inaccettabile."),
        "open_positive": ("Adoro queste scarpe! Le avete di una taglia in più?",
                          "Servizio ottimo finora, ho solo una domanda sulla fattura."),
        "more_neutral": ("Ci sono novità, per favore?", "Quando verrà spedito il mio ordine?"),
        "more_negative": ("È la terza volta che scrivo e nessuno risponde.",
                          "Ancora niente. Voglio il rimborso."),
        "more_positive": ("Grazie mille, tutto risolto!", "Perfetto, il pacco è arrivato. Grazie!"),
        "first_reply": ("Grazie per averci scritto, controllo subito.",
                        "Ci scusiamo per il disagio, sto verificando il suo ordine."),
        "update": ("Il suo ordine è partito oggi dal nostro magazzino.",
                   "Abbiamo emesso il rimborso, lo vedrà tra pochi giorni."),
    },
    "pt": {
        "open_neutral": ("Onde está o meu pedido? Ainda não chegou.", "Ainda posso mudar o endereço de entrega?",
                         "Como faço para trocar uma jaqueta que ficou pequena?"),
        "open_negative": ("Cadê o meu pedido? Já faz duas semanas que estou esperando.",
                          "O pacote chegou danificado e estou muito decepcionada.",
                          "Fui cobrado duas vezes pelo mesmo pedido, isso é inaceitável."),
        "open_positive": ("Adorei os tênis! Vocês têm um número maior?",
                          "Atendimento ótimo até agora, só tenho uma dúvida sobre a nota fiscal."),
        "more_neutral": ("Alguma novidade, por favor?", "Quando o meu pedido será enviado?"),
        "more_negative": ("É a terceira vez que escrevo e ninguém responde.",
                          "Continua sem nada. Quero o reembolso."),
        "more_positive": ("Muito obrigado, resolvido!", "Perfeito, o pacote chegou. Obrigada!"),
        "first_reply": ("Obrigado pelo contato, vou verificar agora mesmo.",
                        "Desculpe o transtorno, estou verificando o seu pedido."),
        "update": ("O seu pedido saiu hoje do nosso armazém.",
                   "O reembolso foi feito e aparece em poucos dias."),
    },
    "nl": {
        "open_neutral": ("Waar blijft mijn bestelling? Ze is nog niet aangekomen.",
                         "Kan ik het bezorgadres nog wijzigen?", "Hoe ruil ik een jas die te klein is?"),
        "open_negative": ("Waar is mijn bestelling? Ik wacht al twee weken.",
                          "Het pakket kwam beschadigd aan, ik ben erg teleurgesteld.",
                          "Er is twee keer voor dezelfde bestelling afgeschreven, onacceptabel."),
        "open_positive": ("Ik ben dol op de schoenen! Hebben jullie ze een maat groter?",
                          "Prima service tot nu toe, ik heb alleen een vraag over mijn factuur."),
        "more_neutral": ("Is er al nieuws, alstublieft?", "Wanneer wordt mijn bestelling verzonden?"),
        "more_negative": ("Dit is de derde keer dat ik schrijf en nog steeds geen antwoord.",
                          "Nog steeds niets. Ik wil mijn geld terug."),
        "more_positive": ("Hartelijk dank, het is opgelost!", "Perfect, het pakket is binnen. Bedankt!"),
        "first_reply": ("Bedankt voor uw bericht, ik kijk er meteen naar.",
                        "Excuses voor het ongemak, ik controleer uw bestelling."),
        "update": ("Uw bestelling heeft vandaag ons magazijn verlaten.",
                   "De terugbetaling is gedaan, u ziet ze binnen enkele dagen."),
    },
    "ja": {
        "open_neutral": ("注文した商品はいつ届きますか？まだ届いていません。", "配送先の住所を変更できますか？"),
        "open_negative": ("二週間待っても注文した商品が届きません。", "届いた箱が壊れていて、とても残念です。"),
        "open_positive": ("靴がとても気に入りました。ひとつ大きいサイズはありますか？",),
        "more_neutral": ("その後どうなりましたか？",),
        "more_negative": ("三回目の問い合わせですが、まだ返事がありません。",),
        "more_positive": ("ありがとうございます、解決しました！",),
        "first_reply": ("お問い合わせありがとうございます。すぐに確認いたします。",),
        "update": ("ご注文の商品は本日倉庫から発送されました。",),
    },
    "zh": {
        "open_neutral": ("我的订单到哪里了？还没有收到。", "我还可以修改收货地址吗？"),
        "open_negative": ("我等了两个星期，订单还是没有到。", "包裹到的时候已经损坏了，我很失望。"),
        "open_positive": ("鞋子非常喜欢！有大一号的吗？",),
        "more_neutral": ("请问有什么进展吗？",),
        "more_negative": ("这是我第三次联系你们了，还是没有回复。",),
        "more_positive": ("非常感谢，问题解决了！",),
        "first_reply": ("感谢您的来信，我马上为您查询。",),
        "update": ("您的订单今天已从仓库发出。",),
    },
}


def language_of(locale: str | None) -> str:
    """The phrase language for a customer's locale: its primary tag when phrases exist for it, else English."""
    primary = (locale or "").replace("_", "-").split("-")[0].lower()
    return primary if primary in PHRASES else FALLBACK


class PhraseBook:
    """Writes a ticket's messages: the customer's in their language, the agents' mostly in it too."""

    def write(self, messages: Sequence[Any], locale: str | None, rng: random.Random) -> None:
        """Replace the body of each customer message and each public agent message of one ticket, in order.

        `messages` are the world's `Message`s (role, public, body). Notes, bots, triggers and an agent's message
        opening an outbound ticket keep their text.
        """
        language = language_of(locale)
        reply_language = language if rng.random() < REPLY_IN_CUSTOMER_LANGUAGE else FALLBACK
        mood: Mood = rng.choices(MOODS, weights=OPENING_MOOD_WEIGHTS)[0]
        customer_wrote = replied = False
        for message in messages:
            if message.role == "customer":
                if customer_wrote:
                    mood = rng.choices(MOODS, weights=DRIFT[mood])[0]
                kind = f"{'more' if customer_wrote else 'open'}_{mood}"
                message.body = rng.choice(PHRASES[language][kind])
                customer_wrote = True
            elif message.role == "agent" and message.public and customer_wrote:  # an outbound opener keeps its text
                message.body = rng.choice(PHRASES[reply_language]["update" if replied else "first_reply"])
                replied = True
